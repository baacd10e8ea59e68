package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

type repoKeyListOptions struct {
	*repoFlags
	json bool
}

func newRepoKeyListCmd(f *repoFlags) *cobra.Command {
	o := &repoKeyListOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the keys, oldest first; * marks the one the password opened",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print a JSON array")
	return cmd
}

// keyJSON is the contract of `straddle repo key list --json`.
type keyJSON struct {
	ID       string     `json:"id"`
	Current  bool       `json:"current"`
	Username string     `json:"user"`
	Host     string     `json:"host"`
	Created  *time.Time `json:"created,omitempty"`
	Damaged  string     `json:"damaged,omitempty"`
}

func (o *repoKeyListOptions) run(ctx context.Context, out io.Writer) error {
	r, err := o.open(ctx, false)
	if err != nil {
		return err
	}
	keys, err := r.ListKeys(ctx)
	if err != nil {
		return err
	}
	if o.json {
		docs := make([]keyJSON, 0, len(keys))
		for _, k := range keys {
			d := keyJSON{ID: k.ID.String(), Current: k.Current, Username: k.Username, Host: k.Host, Damaged: k.Damaged}
			if k.Damaged == "" {
				d.Created = &k.Created
			}
			docs = append(docs, d)
		}
		return json.NewEncoder(out).Encode(docs)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, " \tID\tUSER\tHOST\tCREATED")
	for _, k := range keys {
		mark := " "
		if k.Current {
			mark = "*"
		}
		created := k.Created.Local().Format("2006-01-02 15:04:05")
		if k.Damaged != "" {
			created = "damaged: " + k.Damaged
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", mark, k.ID.Short(), k.Username, k.Host, created)
	}
	return tw.Flush()
}
