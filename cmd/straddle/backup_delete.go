package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
)

// backupDeleteOptions are the flags of `straddle backup delete`.
type backupDeleteOptions struct {
	*backupFlags
	confirm bool
	wait    bool
}

func newBackupDeleteCmd(f *backupFlags) *cobra.Command {
	o := &backupDeleteOptions{backupFlags: f}
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a backup: its volume snapshots and its stored metadata go with it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.confirm, "confirm", false, "delete without asking (needed when not on a terminal)")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "wait until the controller has removed the backup's data and the Backup is gone")
	return cmd
}

func (o *backupDeleteOptions) run(ctx context.Context, name string, in io.Reader, out io.Writer) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	b, err := getBackup(ctx, cl, o.namespace, name)
	if err != nil {
		return err
	}
	pvbs, err := listVolumeBackups(ctx, cl, b)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, deletionPlan(b, pvbs))
	if !o.confirm {
		f, ok := in.(*os.File)
		if !ok || !isTerminal(f) {
			return fmt.Errorf("not deleting backup %q without --confirm (there is no terminal to ask)", name)
		}
		if !askYes(in, out, fmt.Sprintf("Delete backup %q?", name)) {
			return fmt.Errorf("backup %q not deleted", name)
		}
	}
	// Background propagation: the Backup goes first; its PodVolumeBackups, which it owns, follow.
	err = cl.Delete(ctx, b, client.PropagationPolicy("Background"))
	if apierrors.IsNotFound(err) {
		fmt.Fprintf(out, "Backup %q is already gone.\n", name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete backup %s/%s: %w", o.namespace, name, err)
	}
	if !o.wait {
		fmt.Fprintf(out, "Backup %q deletion requested; the controller removes its data. straddle backup get %s shows it until it is gone.\n", name, name)
		return nil
	}
	fmt.Fprintf(out, "Backup %q deletion requested; waiting until it is gone...\n", name)
	if err := waitGone(ctx, cl, o.namespace, name, clock.RealClock{}, time.Second); err != nil {
		return err
	}
	fmt.Fprintf(out, "Backup %q deleted.\n", name)
	return nil
}

// deletionPlan says what deleting the backup will remove, before it is removed.
func deletionPlan(b *v1.Backup, pvbs []v1.PodVolumeBackup) string {
	snapshots := 0
	for i := range pvbs {
		if pvbs[i].Status.SnapshotID != "" {
			snapshots++
		}
	}
	loc := b.Spec.StorageLocation
	if loc == "" {
		loc = "the default storage location"
	} else {
		loc = "storage location " + loc
	}
	return fmt.Sprintf("Deleting backup %q removes its %d volume snapshot(s) from the repositories and its metadata under %s/ in %s; the data they alone held is freed by the next prune.",
		b.Name, snapshots, bsl.BackupPath(b.Name), loc)
}

// askYes asks a yes/no question; anything but y or yes is no.
func askYes(in io.Reader, out io.Writer, question string) bool {
	fmt.Fprintf(out, "%s [y/N] ", question)
	line, _ := bufio.NewReader(in).ReadString('\n')
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes"
}

// waitGone polls until the Backup is gone: the controller's finalizer holds it until its data is removed.
func waitGone(ctx context.Context, cl client.Client, namespace, name string, clk clock.Clock, interval time.Duration) error {
	var failingSince time.Time
	for {
		var b v1.Backup
		err := cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &b)
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("stopped waiting; the deletion of backup %q goes on", name)
		case err == nil:
			failingSince = time.Time{}
		case failingSince.IsZero():
			failingSince = clk.Now()
		case clk.Since(failingSince) > readErrorGrace:
			return fmt.Errorf("gave up waiting for backup %q to go after a minute of failed reads: %w", name, err)
		}
		select {
		case <-ctx.Done():
		case <-clk.After(interval):
		}
	}
}
