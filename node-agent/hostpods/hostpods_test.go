package hostpods

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// kubeletLayout makes folders under a pods directory the way the kubelet does, one per relative path.
func kubeletLayout(t *testing.T, podsDir string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(podsDir, filepath.FromSlash(d)), 0o750); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindVolumeDirectories(t *testing.T) {
	pods := t.TempDir()
	kubeletLayout(t, pods,
		"uid-1/volumes/kubernetes.io~csi/pvc-123/mount",
		"uid-1/volumes/kubernetes.io~empty-dir/scratch",
		"uid-1/volumes/kubernetes.io~local-volume/local-pv-7",
		"uid-1/volumes/kubernetes.io~nfs/nfs-pv",
		"uid-1/volumes/kubernetes.io~projected/kube-api-access",
		// An inline CSI volume is named after the volume, with its data in mount as well.
		"uid-1/volumes/kubernetes.io~csi/inline/mount",
		// The same name in an unknown plugin folder loses to the known layouts.
		"uid-1/volumes/example.com~other/scratch",
		"uid-2/volumes",
	)
	cases := []struct {
		name   string
		v      Volume
		want   string
		errIs  error
		errHas string
	}{
		{"csi", Volume{PodUID: "uid-1", Name: "data", PVName: "pvc-123"}, "uid-1/volumes/kubernetes.io~csi/pvc-123/mount", nil, ""},
		{"csi inline", Volume{PodUID: "uid-1", Name: "inline"}, "uid-1/volumes/kubernetes.io~csi/inline/mount", nil, ""},
		{"emptyDir", Volume{PodUID: "uid-1", Name: "scratch"}, "uid-1/volumes/kubernetes.io~empty-dir/scratch", nil, ""},
		{"local", Volume{PodUID: "uid-1", Name: "data", PVName: "local-pv-7"}, "uid-1/volumes/kubernetes.io~local-volume/local-pv-7", nil, ""},
		{"nfs", Volume{PodUID: "uid-1", Name: "shared", PVName: "nfs-pv"}, "uid-1/volumes/kubernetes.io~nfs/nfs-pv", nil, ""},
		{"claim is named by its PV, not the volume", Volume{PodNamespace: "ns", PodName: "web-0", PodUID: "uid-1", Name: "scratch", PVName: "pvc-gone"}, "", ErrNotFound,
			`volume "scratch" of pod ns/web-0 not found under ` + filepath.Join(pods, "uid-1", "volumes") + ` (no folder "pvc-gone" of its PersistentVolume in any plugin folder; is --host-pods-dir the kubelet's pods directory?)`},
		{"missing volume", Volume{PodNamespace: "ns", PodName: "web-0", PodUID: "uid-1", Name: "data"}, "", ErrNotFound,
			`volume "data" of pod ns/web-0 not found under ` + filepath.Join(pods, "uid-1", "volumes")},
		{"pod without volumes", Volume{PodUID: "uid-2", Name: "data"}, "", ErrNotFound, "not found under"},
		{"pod not on this node", Volume{PodNamespace: "ns", PodName: "web-0", PodUID: "uid-3", Name: "data"}, "", ErrNotFound, "is --host-pods-dir the kubelet's pods directory, and does the pod run on this node?"},
		{"uid that escapes", Volume{PodUID: "../uid-1", Name: "scratch"}, "", nil, "not a plain name"},
		{"name that escapes", Volume{PodUID: "uid-1", Name: ".."}, "", nil, "not a plain name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Find(pods, c.v)
			if c.want != "" {
				if err != nil || got != filepath.Join(pods, filepath.FromSlash(c.want)) {
					t.Fatalf("Find = %q, %v; want %s", got, err, c.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Find = %q, want an error", got)
			}
			if c.errIs != nil && !errors.Is(err, c.errIs) {
				t.Errorf("error %v is not %v", err, c.errIs)
			}
			if !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("error %q\ndoes not say %q", err, c.errHas)
			}
		})
	}
}

func TestCSIFolderWithoutMountIsNotFound(t *testing.T) {
	pods := t.TempDir()
	// The kubelet has made the volume's folder but not mounted it yet.
	kubeletLayout(t, pods, "uid-1/volumes/kubernetes.io~csi/pvc-1")
	if _, err := Find(pods, Volume{PodUID: "uid-1", Name: "data", PVName: "pvc-1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

// A permission error is only possible for an unprivileged process: as root, the test runs itself again as
// nobody, from a copy of the test binary nobody can execute.
func TestPermissionDeniedSaysSo(t *testing.T) {
	if os.Getenv("HOSTPODS_AS_NOBODY") == "" && os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "hostpods-perm-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		bin, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		exe := filepath.Join(dir, "hostpods.test")
		if err := os.WriteFile(exe, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run", "^TestPermissionDeniedSaysSo$", "-test.v")
		cmd.Env = append(os.Environ(), "HOSTPODS_AS_NOBODY="+dir, "TMPDIR="+dir)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("as nobody: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "--- PASS: TestPermissionDeniedSaysSo") {
			t.Fatalf("as nobody, the test did not run:\n%s", out)
		}
		return
	}
	if os.Geteuid() == 0 {
		t.Fatal("still root")
	}
	pods := t.TempDir()
	kubeletLayout(t, pods, "uid-1/volumes/kubernetes.io~empty-dir/scratch", "uid-2/volumes/kubernetes.io~empty-dir/scratch")
	// uid-1: the volumes folder itself is unreadable; uid-2: the volume is.
	locked := []string{filepath.Join(pods, "uid-1", "volumes"), filepath.Join(pods, "uid-2", "volumes", EmptyDirDir, "scratch")}
	for _, d := range locked {
		if err := os.Chmod(d, 0); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range locked {
			_ = os.Chmod(d, 0o755)
		}
	})
	for _, uid := range []string{"uid-1", "uid-2"} {
		_, err := Find(pods, Volume{PodNamespace: "ns", PodName: "p", PodUID: uid, Name: "scratch"})
		if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "cannot read") || !strings.Contains(err.Error(), "privileged") {
			t.Errorf("%s: err = %v, want permission denied with a hint", uid, err)
		}
	}
}
