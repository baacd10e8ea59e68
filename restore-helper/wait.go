// Package restorehelper holds a restored pod's app until its volumes are rehydrated (DESIGN.md §8): it runs
// as the pod's first init container, `restore-wait`, with each restored volume mounted at
// <restores dir>/<volume name>, and waits until the node-agent has written the marker
// .straddle/<restore uid> at the root of every one of them. Standard library only: the helper is its own
// tiny static image, pulled in offline clusters from their own registry.
package restorehelper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// MarkerDir is the folder at a restored volume's root that holds the node-agent's done markers; the helper
// removes it before the app starts, so the app never sees it.
const MarkerDir = ".straddle"

// Options say what to wait for and how long.
type Options struct {
	// RestoreUID names the restore whose markers count; markers of other restores do not.
	RestoreUID string
	// RestoresDir holds one folder per restored volume.
	RestoresDir string
	// Timeout bounds the wait; 0 waits forever.
	Timeout time.Duration
	// Poll is how often the markers are looked for (default 1 s); Report how often the volumes still awaited
	// are printed (default 30 s).
	Poll, Report time.Duration
	// Now is the clock for reports; nil means time.Now.
	Now func() time.Time
}

// ErrTimeout is returned when some marker did not come within the timeout.
var ErrTimeout = errors.New("timed out")

// Wait returns nil once every volume folder under RestoresDir holds the restore's marker and the marker
// folders are removed. It prints to out what it waits for, then every Report interval which volumes are
// still missing.
func Wait(ctx context.Context, o Options, out io.Writer) error {
	if err := validUID(o.RestoreUID); err != nil {
		return err
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Report <= 0 {
		o.Report = 30 * time.Second
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	volumes, err := volumeDirs(o.RestoresDir)
	if err != nil {
		return err
	}
	if len(volumes) == 0 {
		fmt.Fprintf(out, "no restored volumes under %s: nothing to wait for\n", o.RestoresDir)
		return nil
	}
	fmt.Fprintf(out, "waiting for restore %s of %d volumes: %s\n", o.RestoreUID, len(volumes), strings.Join(volumes, ", "))
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, o.Timeout, ErrTimeout)
		defer cancel()
	}
	start := now()
	lastReport := start
	poll := time.NewTicker(o.Poll)
	defer poll.Stop()
	for {
		missing, err := missingMarkers(o.RestoresDir, volumes, o.RestoreUID)
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			break
		}
		if t := now(); t.Sub(lastReport) >= o.Report {
			fmt.Fprintf(out, "after %s still waiting for %d of %d volumes: %s\n",
				t.Sub(start).Round(time.Second), len(missing), len(volumes), strings.Join(missing, ", "))
			lastReport = t
		}
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrTimeout) {
				return fmt.Errorf("%w after %s: the data of volumes %s was not restored (see the Restore's PodVolumeRestores: straddle restore describe)",
					ErrTimeout, o.Timeout, strings.Join(missing, ", "))
			}
			return fmt.Errorf("stopped while waiting for volumes %s: %w", strings.Join(missing, ", "), context.Cause(ctx))
		case <-poll.C:
		}
	}
	for _, v := range volumes {
		// The helper runs unprivileged, and a volume root may belong to root with mode 0755: then the marker
		// folder cannot go, but the data is complete, so the app may start; the node-agent removes the folder
		// once restore-wait has exited.
		if err := os.RemoveAll(filepath.Join(o.RestoresDir, v, MarkerDir)); err != nil {
			fmt.Fprintf(out, "volume %s is restored, but its marker folder %s stays (the node-agent removes it once the app starts): %v\n", v, MarkerDir, err)
		}
	}
	fmt.Fprintf(out, "all %d volumes restored after %s\n", len(volumes), now().Sub(start).Round(time.Second))
	return nil
}

// validUID refuses a restore UID that could name anything but one file in the marker folder.
func validUID(uid string) error {
	if uid == "" {
		return errors.New("no restore UID: pass --restore-uid")
	}
	if uid == "." || uid == ".." || strings.ContainsAny(uid, "/\\\x00") {
		return fmt.Errorf("restore UID %q is not a plain name", uid)
	}
	return nil
}

// volumeDirs lists the volume folders under dir, sorted.
func volumeDirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the restored volumes folder: %w", err)
	}
	var vols []string
	for _, e := range entries {
		// Mounts show as directories; a symlink to one (as a test may lay out) counts too.
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("restored volume %s: %w", e.Name(), err)
		}
		if fi.IsDir() {
			vols = append(vols, e.Name())
		}
	}
	slices.Sort(vols)
	return vols, nil
}

// missingMarkers returns the volumes whose marker is not there yet, each with why when it is not simply
// absent. A volume root the helper's user may not search counts as not there yet: the restore gives the
// root its backed-up owner and mode, which may let the helper in (a fresh volume's root is often root's,
// mode 0750, before).
func missingMarkers(dir string, volumes []string, uid string) ([]string, error) {
	var missing []string
	for _, v := range volumes {
		_, err := os.Stat(filepath.Join(dir, v, MarkerDir, uid))
		switch {
		case errors.Is(err, os.ErrNotExist):
			missing = append(missing, v)
		case errors.Is(err, os.ErrPermission):
			missing = append(missing, fmt.Sprintf("%s (its root is not searchable by user %d)", v, os.Getuid()))
		case err != nil:
			return nil, fmt.Errorf("look for the marker of volume %s: %w", v, err)
		}
	}
	return missing, nil
}
