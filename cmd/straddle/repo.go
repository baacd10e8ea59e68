package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/location"
	"github.com/straddle-io/straddle/repo/storage/retry"
)

// repoFlags are the flags every `straddle repo` command shares.
type repoFlags struct {
	repo         string
	passwordFile string
}

func (f *repoFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.repo, "repo", os.Getenv("STRADDLE_REPOSITORY"),
		"repository location: a path, file:///path, s3://host[:port]/bucket[/prefix] (env STRADDLE_REPOSITORY)")
	cmd.PersistentFlags().StringVar(&f.passwordFile, "password-file", "", "read the repository password from this file (else env STRADDLE_PASSWORD)")
}

func newRepoCmd() *cobra.Command {
	f := &repoFlags{}
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Work with a repository directly, no cluster needed",
	}
	f.register(cmd)
	cmd.AddCommand(newRepoInitCmd(f), newRepoBackupCmd(f), newRepoRestoreCmd(f), newRepoSnapshotsCmd(f), newRepoCheckCmd(f), newRepoStatsCmd(f))
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
	be, err := openBackend(ctx, loc, false)
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
		return nil, fmt.Errorf("open repository %s: %w", loc, err)
	}
	if loadIndex {
		if err := r.LoadIndex(ctx); err != nil {
			return nil, fmt.Errorf("load the index of %s: %w", loc, err)
		}
	}
	return r, nil
}

// openBackend opens the location's storage behind the retry wrapper, so every command rides out throttling,
// resets and cut-off reads the same way and backups can report how many requests were repeated.
func openBackend(ctx context.Context, loc location.Location, create bool) (storage.Backend, error) {
	be, err := location.Open(ctx, loc, location.Options{Create: create})
	if err != nil {
		return nil, err
	}
	return retry.New(be, retry.Options{})
}
