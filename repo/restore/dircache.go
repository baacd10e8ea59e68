package restore

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// maxOpenDirs bounds the directory descriptors kept open between uses.
const maxOpenDirs = 256

// dirCache keeps descriptors of the target's directories, so files are created and finished relative to their
// directory (one path component, never following a symlink) instead of resolving their whole path each time.
type dirCache struct {
	root *os.Root
	mu   sync.Mutex
	open map[string]*dirRef
}

type dirRef struct {
	f    *os.File
	fd   int
	refs int
}

func newDirCache(root *os.Root) *dirCache {
	return &dirCache{root: root, open: map[string]*dirRef{}}
}

// acquire returns the directory at rel (relative to the target), opened through the root without following
// symlinks; release it when done.
func (c *dirCache) acquire(rel string) (*dirRef, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.open[rel]; ok {
		d.refs++
		return d, nil
	}
	if len(c.open) >= maxOpenDirs {
		for k, d := range c.open {
			if d.refs == 0 {
				d.f.Close()
				delete(c.open, k)
			}
		}
	}
	f, err := c.root.OpenFile(rel, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", rel, err)
	}
	d := &dirRef{f: f, fd: int(f.Fd()), refs: 1}
	c.open[rel] = d
	return d, nil
}

func (c *dirCache) release(d *dirRef) {
	c.mu.Lock()
	d.refs--
	c.mu.Unlock()
}

func (c *dirCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, d := range c.open {
		d.f.Close()
		delete(c.open, k)
	}
}
