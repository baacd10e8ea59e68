package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/test/kubeletsim"
)

// backup backs the namespace up with the CLI and checks the Backup Completed with every volume.
func (d *demo) backup(ctx context.Context) error {
	d.section("Back up the namespace: its resources, and the annotated volumes file by file")
	if err := d.straddle(ctx, 5*time.Minute, "backup", "create", backupName, "--include-namespaces", votingNS, "--wait"); err != nil {
		return check("the backup completes", err)
	}
	if err := d.straddle(ctx, time.Minute, "backup", "describe", backupName); err != nil {
		return check("backup describe works", err)
	}
	var b v1.Backup
	if err := d.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: backupName}, &b); err != nil {
		return check("the backup completes", fmt.Errorf("read Backup %s: %w", backupName, err))
	}
	if b.Status.Phase != v1.PhaseCompleted || b.Status.VolumesCompleted != len(volumes) {
		return check("the backup completes", fmt.Errorf("backup %s is %s with %d of %d volumes completed, want Completed with %d",
			backupName, b.Status.Phase, b.Status.VolumesCompleted, b.Status.VolumesTotal, len(volumes)))
	}
	return nil
}

// deleteNamespace deletes namespace voting as `kubectl delete namespace` and the namespace controller would,
// and checks the volumes' data is gone from the nodes.
func (d *demo) deleteNamespace(ctx context.Context) error {
	d.section("Disaster: the namespace is deleted")
	d.command("kubectl delete namespace " + votingNS)
	var dirs []string
	for _, v := range volumes {
		dir, err := d.volumeDir(ctx, v.pod, v.volume)
		if err != nil {
			return err
		}
		dirs = append(dirs, dir)
	}
	if err := kubeletsim.DeleteNamespace(ctx, d.cfg, votingNS, d.procs.died); err != nil {
		return check("the namespace is deleted", err)
	}
	fmt.Fprintf(d.out, "namespace %q deleted\n", votingNS)
	for _, dir := range dirs {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			return check("the volumes are gone with the namespace", fmt.Errorf("%s is still there: %v", dir, err))
		}
	}
	d.note("the pods, the claim and their data are gone from both nodes")
	return nil
}

// restore restores the backup with the CLI, checks the Restore Completed and waits for the restored pods to
// run (the simulated kubelet runs the real restore helper as their restore-wait init container).
func (d *demo) restore(ctx context.Context) error {
	d.section("Restore: resources in order, then each volume's files into its new pod before the app starts")
	if err := d.straddle(ctx, 5*time.Minute, "restore", "create", restoreName, "--from-backup", backupName, "--wait"); err != nil {
		return check("the restore completes", err)
	}
	var r v1.Restore
	if err := d.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: restoreName}, &r); err != nil {
		return check("the restore completes", fmt.Errorf("read Restore %s: %w", restoreName, err))
	}
	if r.Status.Phase != v1.PhaseCompleted || r.Status.VolumesCompleted != len(volumes) {
		return check("the restore completes", fmt.Errorf("restore %s is %s with %d of %d volumes completed, want Completed with %d",
			restoreName, r.Status.Phase, r.Status.VolumesCompleted, r.Status.VolumesTotal, len(volumes)))
	}
	if err := check("the restored pods run", d.waitPodsRunning(ctx, len(volumes))); err != nil {
		return err
	}
	return d.getPods(ctx)
}

// verify compares each restored volume with the copy taken before the backup, byte for byte.
func (d *demo) verify(ctx context.Context) error {
	d.section("Verify: every restored file, byte for byte, against what was written")
	for _, v := range volumes {
		dir, err := d.volumeDir(ctx, v.pod, v.volume)
		if err != nil {
			return check("the restored volumes are mounted", err)
		}
		name := v.pod + "/" + v.volume
		files, size, err := verifyVolume(name, d.original[name], dir)
		if err != nil {
			return err
		}
		if err := d.completeAtStart(ctx, v.pod, v.volume); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "ok  %s: %d files, %s, identical (content, types, modes, links), all there when restore-wait let the app start\n",
			name, files, humanBytes(size))
	}
	return nil
}

// completeAtStart checks the restored pod's restore-wait (the real restore helper) exited 0 with the volume
// already complete: the listing the simulated kubelet took the instant it exited equals the original's.
func (d *demo) completeAtStart(ctx context.Context, pod, volume string) error {
	what := "volume " + pod + "/" + volume + " is complete before the app starts"
	var p corev1.Pod
	if err := d.cl.Get(ctx, client.ObjectKey{Namespace: votingNS, Name: pod}, &p); err != nil {
		return check(what, fmt.Errorf("read pod %s: %w", pod, err))
	}
	run := d.kubelet.Helper(string(p.UID))
	if run == nil {
		return check(what, fmt.Errorf("pod %s got no restore-wait init container", pod))
	}
	if run.ExitCode != 0 {
		return check(what, fmt.Errorf("restore-wait of pod %s exited %d: %s", pod, run.ExitCode, run.Output))
	}
	want, err := kubeletsim.ListTree(d.original[pod+"/"+volume])
	if err != nil {
		return check(what, err)
	}
	if got := run.Listing[volume]; !maps.Equal(got, want) {
		return check(what, fmt.Errorf("when restore-wait exited the volume held %d entries, %d differing from the %d written",
			len(got), countDiffering(want, got), len(want)))
	}
	return nil
}

// countDiffering counts the paths whose entry in got is missing or other than in want, and got's extras.
func countDiffering(want, got map[string]string) int {
	n := 0
	for p, w := range want {
		if got[p] != w {
			n++
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			n++
		}
	}
	return n
}
