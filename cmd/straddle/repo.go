package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/location"
	"github.com/straddle-io/straddle/repo/storage/retry"
)

// repoFlags are the flags every `straddle repo` command shares.
type repoFlags struct {
	repo         string
	passwordFile string
	lockWait     time.Duration
	storage      location.Options
	// cacheDir holds the local snapshot cache and a paged index's files.
	cacheDir string
	// indexPaging bounds the index that open and withLock load (set by commands with --memory-limit).
	indexPaging index.Paging
}

func (f *repoFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.repo, "repo", os.Getenv("STRADDLE_REPOSITORY"),
		"repository location: a path, file:///path, s3://host[:port]/bucket[/prefix] (https) or s3+http://… (env STRADDLE_REPOSITORY)")
	fl.StringVar(&f.passwordFile, "password-file", "", "read the repository password from this file (else env STRADDLE_PASSWORD)")
	fl.DurationVar(&f.lockWait, "lock-wait", 10*time.Minute,
		"how long to wait while another process holds a conflicting repository lock (such as prune's short deletion phase)")
	fl.StringVar(&f.storage.CACertFile, "cacert", "", "trust the certificate authorities in this PEM `file` for s3:// (besides the system's)")
	fl.BoolVar(&f.storage.InsecureTLS, "insecure-tls", false, "do not verify the s3:// server's TLS certificate")
	fl.StringVar(&f.storage.Region, "region", "", "S3 region (default $AWS_REGION, else $AWS_DEFAULT_REGION, else us-east-1)")
	fl.StringVar(&f.storage.BucketLookup, "s3-bucket-lookup", "auto", "how requests name the bucket: auto, path (host/bucket) or dns (bucket.host)")
	fl.StringVar(&f.cacheDir, "cache-dir", defaultCacheDir(), "local cache of sealed snapshots (per repository ID) and of a paged index; empty disables the snapshot cache")
}

// defaultCacheDir is straddle's directory under the user's cache directory ($XDG_CACHE_HOME or ~/.cache).
func defaultCacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "straddle")
}

// openStorage opens the location's backend; create makes a missing directory or bucket (for init).
func (f *repoFlags) openStorage(ctx context.Context, loc location.Location, create bool) (storage.Backend, error) {
	opts := f.storage
	opts.Create = create
	be, err := location.Open(ctx, loc, opts)
	if err != nil {
		return nil, storageHint(err)
	}
	// Behind the retry wrapper, every command rides out throttling, resets and cut-off reads the same way, and
	// backups can report how many requests were repeated.
	return retry.New(be, retry.Options{})
}

// storageHint adds what the user can do about a storage error in terms of this command's flags.
func storageHint(err error) error {
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) {
		return fmt.Errorf("%w; pass --cacert with the certificate authority that signed it, or --insecure-tls", err)
	}
	return err
}

func newRepoCmd() *cobra.Command {
	f := &repoFlags{}
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Work with a repository directly, no cluster needed",
	}
	f.register(cmd)
	cmd.AddCommand(newRepoInitCmd(f), newRepoBackupCmd(f), newRepoRestoreCmd(f), newRepoSnapshotsCmd(f), newRepoCheckCmd(f), newRepoStatsCmd(f),
		newRepoForgetCmd(f), newRepoKeyCmd(f), newRepoPruneCmd(f), newRepoUnlockCmd(f))
	return cmd
}

func (f *repoFlags) password() ([]byte, error) {
	if f.passwordFile != "" {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("read password file: %w", err)
		}
		// Files written by editors and `echo` end in a newline that is not part of the password.
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("password file %s is empty", f.passwordFile)
		}
		return b, nil
	}
	if p := os.Getenv("STRADDLE_PASSWORD"); p != "" {
		return []byte(p), nil
	}
	return nil, errors.New("no repository password: set STRADDLE_PASSWORD or pass --password-file")
}

// open opens the repository and, when loadIndex is set, reads its index.
func (f *repoFlags) open(ctx context.Context, loadIndex bool) (*repo.Repository, error) {
	loc, err := location.Parse(f.repo)
	if err != nil {
		return nil, err
	}
	pw, err := f.password()
	if err != nil {
		return nil, err
	}
	be, err := f.openStorage(ctx, loc, false)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, be, pw, repo.OpenOptions{})
	switch {
	case errors.Is(err, repo.ErrNoRepository):
		return nil, fmt.Errorf("there is no repository at %s; create one with: straddle repo init --repo %s", loc, loc)
	case errors.Is(err, repo.ErrWrongPassword):
		return nil, fmt.Errorf("wrong password for the repository at %s", loc)
	case err != nil:
		return nil, storageHint(fmt.Errorf("open repository %s: %w", loc, err))
	}
	r.SetIndexPaging(f.indexPaging)
	r.UseCacheDir(f.cacheDir)
	if loadIndex {
		if err := r.LoadIndex(ctx); err != nil {
			return nil, storageHint(fmt.Errorf("load the index of %s: %w", loc, err))
		}
	}
	return r, nil
}

// withLock opens the repository, takes a lock of kind for purpose, loads the index when loadIndex is set, and
// runs fn. The index is loaded under the lock: prune's deletion phase relies on every process that has
// loaded the index holding a lock, so it never deletes a pack such a process may still use.
func (f *repoFlags) withLock(ctx context.Context, kind lock.Kind, purpose string, loadIndex bool, fn func(context.Context, *repo.Repository) error) error {
	r, err := f.open(ctx, false)
	if err != nil {
		return err
	}
	return lock.WithLock(ctx, r, kind, purpose, lock.Options{WaitTimeout: f.lockWait}, func(ctx context.Context) error {
		if loadIndex {
			if err := r.LoadIndex(ctx); err != nil {
				return fmt.Errorf("load the index of %s: %w", r.Backend().Location(), err)
			}
		}
		return fn(ctx, r)
	})
}
