package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/snapshot"
)

type repoBackupOptions struct {
	*repoFlags
	parent   string
	tags     []string
	excludes []string
	host     string
	json     bool
	progress bool
	// memoryLimit bounds the in-memory index (a quarter of it); beyond that the index is paged to --cache-dir.
	memoryLimit string
	// checkpointInterval is how often the packs stored so far are indexed, so a killed backup's retry reuses
	// them. Hidden: the default suits real use; tests that kill backups shorten it.
	checkpointInterval time.Duration
}

func newRepoBackupCmd(f *repoFlags) *cobra.Command {
	o := &repoBackupOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "backup PATH",
		Short: "Back up a directory into a new snapshot",
		Long: "Back up a directory into a new snapshot. Without --parent, the newest snapshot of the same host and path\n" +
			"is the parent: files whose size, times and inode match it are not read again.\n" +
			"Exit status 3 means the snapshot was saved but some files could not be read (listed as warnings).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.progress = isTerminal(os.Stderr)
			return o.run(cmd.Context(), args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	host, _ := os.Hostname()
	cmd.Flags().StringVar(&o.parent, "parent", "", "snapshot ID to compare with (default: newest of this host and path)")
	cmd.Flags().StringArrayVar(&o.tags, "tag", nil, "tag the snapshot with key=value (repeatable)")
	cmd.Flags().StringArrayVar(&o.excludes, "exclude", nil, "leave out paths matching this glob, relative to PATH: *.tmp at any depth, cache/** from the root (repeatable)")
	cmd.Flags().StringVar(&o.host, "host", host, "host name recorded in the snapshot")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as one JSON object")
	cmd.Flags().StringVar(&o.memoryLimit, "memory-limit", "auto",
		"memory the backup should stay within, such as 512Mi: a quarter of it bounds the in-memory index, which is paged to --cache-dir beyond that (auto: the cgroup's limit; 0: none)")
	cmd.Flags().DurationVar(&o.checkpointInterval, "checkpoint-interval", 5*time.Minute,
		"how often the data stored so far is indexed, so that a retry of a killed backup reuses it")
	_ = cmd.Flags().MarkHidden("checkpoint-interval")
	return cmd
}

// backupJSON is the contract of `straddle repo backup --json`.
type backupJSON struct {
	SnapshotID string `json:"snapshot_id"`
	Parent     string `json:"parent,omitempty"`
	snapshot.Summary
	WarningList []string `json:"warning_list,omitempty"`
}

func parseTags(tags []string) (map[string]string, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, t := range tags {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("tag %q is not key=value", t)
		}
		m[k] = v
	}
	return m, nil
}

func (o *repoBackupOptions) run(ctx context.Context, path string, out, errOut io.Writer) error {
	tags, err := parseTags(o.tags)
	if err != nil {
		return err
	}
	// A bad pattern is reported before the repository is even opened.
	if _, err := backup.NewExcluder(o.excludes); err != nil {
		return err
	}
	if o.checkpointInterval <= 0 {
		return fmt.Errorf("--checkpoint-interval %v: want a positive duration such as 5m", o.checkpointInterval)
	}
	limit, err := parseMemoryLimit(o.memoryLimit, cgroupMemoryFiles)
	if err != nil {
		return err
	}
	o.indexPaging = index.Paging{Budget: repo.IndexBudget(limit), Dir: o.cacheDir}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(abs); err != nil {
		return fmt.Errorf("cannot back up %s: %w", path, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("cannot back up %s: not a directory", path)
	}
	// A path reached through a symlink is backed up, and matched to its parent snapshot, as the real path.
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return fmt.Errorf("cannot back up %s: %w", path, err)
	}
	return o.withLock(ctx, lock.Shared, "backup", true, func(ctx context.Context, r *repo.Repository) error {
		return o.backup(ctx, r, abs, tags, out, errOut)
	})
}

func (o *repoBackupOptions) backup(ctx context.Context, r *repo.Repository, abs string, tags map[string]string, out, errOut io.Writer) error {
	parent, err := o.findParent(ctx, r, abs)
	if err != nil {
		return err
	}
	opts := backup.Options{Path: abs, Host: o.host, Tags: tags, Excludes: o.excludes, Parent: parent,
		Writer: repo.WriterOptions{CheckpointInterval: o.checkpointInterval}}
	var bar *progressBar
	if o.progress {
		bar = newProgressBar(errOut, "backup")
		opts.Progress = func(p backup.Progress) {
			bar.update(p.BytesDone, p.BytesTotal, p.FilesDone, p.FilesTotal, p.ScanDone)
		}
	}
	res, err := backup.Run(ctx, r, opts)
	bar.finish()
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(errOut, "warning: %s\n", w)
	}
	if o.json {
		doc := backupJSON{SnapshotID: res.Snapshot.ID.String(), Summary: res.Summary}
		if parent != nil {
			doc.Parent = parent.ID.String()
		}
		for _, w := range res.Warnings {
			doc.WarningList = append(doc.WarningList, w.String())
		}
		if err := json.NewEncoder(out).Encode(doc); err != nil {
			return err
		}
	} else {
		printBackupSummary(out, res, parent)
	}
	if len(res.Warnings) > 0 {
		return &exitError{code: 3, err: fmt.Errorf("snapshot %s saved, but %d files or directories could not be read", res.Snapshot.ID.Short(), len(res.Warnings))}
	}
	return nil
}

func (o *repoBackupOptions) findParent(ctx context.Context, r *repo.Repository, abs string) (*snapshot.Snapshot, error) {
	if o.parent != "" {
		s, err := r.FindSnapshot(ctx, o.parent, repo.Filter{})
		if err != nil {
			return nil, fmt.Errorf("parent snapshot: %w", err)
		}
		return s, nil
	}
	s, err := r.FindSnapshot(ctx, "latest", repo.Filter{Host: o.host, Path: abs})
	switch {
	case errors.Is(err, repo.ErrNotFound):
		// No earlier snapshot of this path: a full backup.
		return nil, nil
	case err != nil:
		// Not a silent full backup: reading every file again would hide that the storage is failing.
		return nil, fmt.Errorf("find the parent snapshot: %w", err)
	}
	return s, nil
}

func printBackupSummary(out io.Writer, res *backup.Result, parent *snapshot.Snapshot) {
	s := res.Summary
	if parent != nil {
		fmt.Fprintf(out, "parent snapshot %s\n", parent.ID.Short())
	}
	if ex := res.Snapshot.Excludes; len(ex) > 0 {
		fmt.Fprintf(out, "excluded: %s\n", strings.Join(ex, ", "))
	}
	fmt.Fprintf(out, "files: %d new, %d changed, %d unmodified; %d directories\n", s.FilesNew, s.FilesChanged, s.FilesUnmodified, s.Dirs)
	fmt.Fprintf(out, "read %s of %s, added %s (%s stored) in %.1fs\n", humanBytes(s.BytesRead), humanBytes(s.BytesTotal), humanBytes(s.BytesAdded), humanBytes(s.BytesStored), s.DurationSeconds)
	if s.StorageRetries > 0 {
		fmt.Fprintf(out, "storage: %d requests retried after transient errors\n", s.StorageRetries)
	}
	fmt.Fprintf(out, "snapshot %s saved\n", res.Snapshot.ID.Short())
}
