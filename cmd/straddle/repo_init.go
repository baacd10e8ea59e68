package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/compress"
	"github.com/straddle-io/straddle/repo/storage/location"
)

type repoInitOptions struct {
	*repoFlags
	compression string
}

func newRepoInitCmd(f *repoFlags) *cobra.Command {
	o := &repoInitOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new encrypted repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.compression, "compression", "fastest", "zstd level for new data: fastest, default, better, best or off")
	return cmd
}

func (o *repoInitOptions) run(ctx context.Context, out io.Writer) error {
	level, err := compress.ParseLevel(o.compression)
	if err != nil {
		return err
	}
	loc, err := location.Parse(o.repo)
	if err != nil {
		return err
	}
	pw, err := o.password()
	if err != nil {
		return err
	}
	if err := checkEmptyDir(loc); err != nil {
		return err
	}
	be, err := openBackend(ctx, loc, true)
	if err != nil {
		return err
	}
	r, err := repo.Init(ctx, be, pw, repo.InitOptions{Compression: level})
	if errors.Is(err, repo.ErrExists) {
		return fmt.Errorf("a repository already exists at %s", loc)
	}
	if err != nil {
		return fmt.Errorf("init repository at %s: %w", loc, err)
	}
	fmt.Fprintf(out, "created repository %s at %s\n", r.Config().ID.Short(), loc)
	fmt.Fprintln(out, "Keep the password safe: without it the data cannot be read by anyone, including you.")
	return nil
}

// checkEmptyDir refuses to create a repository among other files: a mistyped path must not scatter
// repository objects through someone's data. A directory that already holds a repository is left to Init,
// which says so.
func checkEmptyDir(loc location.Location) error {
	if loc.Scheme != "file" {
		return nil
	}
	entries, err := os.ReadDir(loc.Path)
	if err != nil || len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(loc.Path, "config")); err == nil {
		return nil
	}
	return fmt.Errorf("%s is not empty and holds no repository; choose an empty or new directory", loc.Path)
}
