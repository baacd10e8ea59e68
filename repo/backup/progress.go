package backup

import (
	"context"
	"io/fs"
	"path/filepath"
	"sync"
	"time"
)

// startProgress scans for totals and reports progress until the returned stop is called, which also sends a
// final report. Without a Progress callback it does nothing: the scan costs a second walk.
func (b *backup) startProgress(ctx context.Context, root string) (stop func()) {
	if b.opts.Progress == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if p != root {
				if rel, rerr := filepath.Rel(root, p); rerr == nil && b.excl.Excluded(filepath.ToSlash(rel), d.IsDir()) {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
			}
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			if fi, err := d.Info(); err == nil {
				b.totalFiles.Add(1)
				b.totalBytes.Add(uint64(fi.Size()))
			}
			return nil
		})
		if ctx.Err() == nil {
			b.scanDone.Store(true)
		}
	})
	wg.Go(func() {
		t := time.NewTicker(b.opts.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				b.opts.Progress(b.progress())
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		b.opts.Progress(b.progress())
	}
}

func (b *backup) progress() Progress {
	p := Progress{FilesDone: b.filesDone.Load(), BytesDone: b.bytesDone.Load(), ScanDone: b.scanDone.Load(), Elapsed: b.opts.Now().Sub(b.start)}
	if p.ScanDone {
		p.FilesTotal, p.BytesTotal = b.totalFiles.Load(), b.totalBytes.Load()
	}
	return p
}
