package nodeagent

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestRemoveMarkerDirOnlyWithTheRestoresMarker(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, MarkerDir), 0o777); err != nil {
		t.Fatal(err)
	}
	// A folder of that name without this restore's marker is not ours: the app's, or another restore's.
	if err := os.WriteFile(filepath.Join(dir, MarkerDir, "other-restore"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if removed, err := removeMarkerDir(dir, "this-restore"); removed || err != nil {
		t.Fatalf("removed %v, %v without the marker", removed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, MarkerDir, "other-restore")); err != nil {
		t.Fatalf("a folder without the marker lost its file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, MarkerDir, "this-restore"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if removed, err := removeMarkerDir(dir, "this-restore"); !removed || err != nil {
		t.Fatalf("removed %v, %v with the marker", removed, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, MarkerDir)); !os.IsNotExist(err) {
		t.Errorf("marker folder still there: %v", err)
	}
	if removed, err := removeMarkerDir(dir, "this-restore"); removed || err != nil {
		t.Errorf("second removal: %v, %v", removed, err)
	}
	// The helper emptied the folder but could not remove it.
	if err := os.Mkdir(filepath.Join(dir, MarkerDir), 0o777); err != nil {
		t.Fatal(err)
	}
	if removed, err := removeMarkerDir(dir, "this-restore"); !removed || err != nil {
		t.Fatalf("removed %v, %v an empty marker folder", removed, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, MarkerDir)); !os.IsNotExist(err) {
		t.Errorf("empty marker folder still there: %v", err)
	}
	// A marker folder swapped for a symlink is not followed.
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "this-restore"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, MarkerDir)); err != nil {
		t.Fatal(err)
	}
	if removed, err := removeMarkerDir(dir, "this-restore"); removed {
		t.Errorf("followed a symlinked marker folder (err %v)", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "this-restore")); err != nil {
		t.Errorf("a file outside the volume went: %v", err)
	}
}

func TestAppStarted(t *testing.T) {
	init := func(s corev1.ContainerState) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{{Name: restoreWaitContainer, State: s}}}}
	}
	for name, tc := range map[string]struct {
		pod  *corev1.Pod
		want bool
	}{
		"running pod":           {&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, true},
		"restore-wait running":  {init(corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}), false},
		"restore-wait exited 0": {init(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}), true},
		"restore-wait failed":   {init(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}), false},
		"no status yet":         {&corev1.Pod{}, false},
	} {
		if got := appStarted(tc.pod); got != tc.want {
			t.Errorf("%s: appStarted %v, want %v", name, got, tc.want)
		}
	}
}
