package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/check"
	"github.com/straddle-io/straddle/repo/lock"
)

type repoCheckOptions struct {
	*repoFlags
	readData bool
	subset   string
	json     bool
}

func newRepoCheckCmd(f *repoFlags) *cobra.Command {
	o := &repoCheckOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify the repository's structure, and with --read-data every byte of it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.readData, "read-data", false, "download and verify every pack")
	cmd.Flags().StringVar(&o.subset, "read-data-subset", "", "download and verify a random N% of the packs")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as one JSON object")
	return cmd
}

func parsePercent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || !strings.HasSuffix(s, "%") || v <= 0 || v > 100 {
		return 0, fmt.Errorf("--read-data-subset %q: want a percentage such as 10%%", s)
	}
	return v / 100, nil
}

func (o *repoCheckOptions) run(ctx context.Context, out io.Writer) error {
	opts := check.Options{ReadData: o.readData}
	if o.subset != "" {
		if o.readData {
			return fmt.Errorf("--read-data and --read-data-subset exclude each other")
		}
		v, err := parsePercent(o.subset)
		if err != nil {
			return err
		}
		opts.ReadDataSubset = v
	}
	var res *check.Result
	err := o.withLock(ctx, lock.Shared, "check", false, func(ctx context.Context, r *repo.Repository) error {
		var err error
		if res, err = check.Run(ctx, r, opts); err != nil {
			return fmt.Errorf("check could not finish: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if o.json {
		if res.Errors == nil {
			res.Errors = []check.Problem{}
		}
		if err := json.NewEncoder(out).Encode(struct {
			OK bool `json:"ok"`
			*check.Result
		}{res.OK(), res}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "checked %d snapshots, %d trees, %d index files, %d packs", res.Snapshots, res.Trees, res.IndexFiles, res.Packs)
		if res.PacksRead > 0 {
			fmt.Fprintf(out, "; read %d packs (%s) and verified %d blobs", res.PacksRead, humanBytes(uint64(res.BytesRead)), res.BlobsVerify)
		}
		fmt.Fprintln(out)
		for _, n := range res.Notes {
			fmt.Fprintf(out, "note: %s\n", n)
		}
		for _, e := range res.Errors {
			fmt.Fprintf(out, "error: %s\n", e)
		}
	}
	if !res.OK() {
		return fmt.Errorf("the repository has %d errors, first: %s", len(res.Errors), res.Errors[0])
	}
	if !o.json {
		fmt.Fprintln(out, "no errors found")
	}
	return nil
}
