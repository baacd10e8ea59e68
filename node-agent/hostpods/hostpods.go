// Package hostpods finds a pod volume's data in the kubelet's pods directory as a node-agent sees it:
// <pods dir>/<pod UID>/volumes/<plugin dir>/<name>, where a CSI volume keeps its data in a mount folder below.
package hostpods

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Plugin directories whose layout is known; every other plugin directory is searched for the name.
const (
	CSIDir      = "kubernetes.io~csi"
	EmptyDirDir = "kubernetes.io~empty-dir"
	// csiMount is the folder of a CSI volume's directory the kubelet mounts the volume at.
	csiMount = "mount"
)

// ErrNotFound means the volume's folder is not under the pod's volumes directory.
var ErrNotFound = errors.New("volume directory not found")

// Volume names one volume of one pod.
type Volume struct {
	PodNamespace, PodName, PodUID string
	// Name is the volume's name in the pod spec.
	Name string
	// PVName is the PersistentVolume bound to the volume's claim; empty for a volume that is not a claim.
	// The kubelet names a claim's folder after the PV, not the volume.
	PVName string
}

func (v Volume) String() string {
	return fmt.Sprintf("volume %q of pod %s/%s", v.Name, v.PodNamespace, v.PodName)
}

// Find returns the directory holding v's data under podsDir. Errors say what was looked for and where, and
// match ErrNotFound or fs.ErrPermission.
func Find(podsDir string, v Volume) (string, error) {
	if v.PodUID == "" || v.PodUID != filepath.Base(v.PodUID) || v.PodUID == ".." {
		return "", fmt.Errorf("%s: pod UID %q is not a plain name", v, v.PodUID)
	}
	volumes := filepath.Join(podsDir, v.PodUID, "volumes")
	name := v.Name
	if v.PVName != "" {
		name = v.PVName
	}
	if name != filepath.Base(name) || name == ".." || name == "." {
		return "", fmt.Errorf("%s: name %q is not a plain name", v, name)
	}
	plugins, err := os.ReadDir(volumes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, perr := os.Stat(filepath.Join(podsDir, v.PodUID)); perr != nil {
			return "", fmt.Errorf("%s not found under %s (no folder of pod UID %s in %s; is --host-pods-dir the kubelet's pods directory, and does the pod run on this node?): %w", v, volumes, v.PodUID, podsDir, ErrNotFound)
		}
		return "", fmt.Errorf("%s not found under %s (the pod has no volumes folder): %w", v, volumes, ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return "", fmt.Errorf("%s: cannot read %s (does the node-agent run as root with its capabilities, or privileged where SELinux needs it?): %w", v, volumes, err)
	case err != nil:
		return "", fmt.Errorf("%s: read %s: %w", v, volumes, err)
	}
	var dirs []string
	for _, p := range plugins {
		if p.IsDir() {
			dirs = append(dirs, p.Name())
		}
	}
	// Known layouts first, so an unrelated plugin folder holding the same name never wins over them.
	slices.SortStableFunc(dirs, func(a, b string) int { return rank(a) - rank(b) })
	for _, plugin := range dirs {
		dir := filepath.Join(volumes, plugin, name)
		if plugin == CSIDir {
			dir = filepath.Join(dir, csiMount)
		}
		fi, err := os.Lstat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case errors.Is(err, fs.ErrPermission):
			return "", fmt.Errorf("%s: cannot read %s (does the node-agent run as root with its capabilities, or privileged where SELinux needs it?): %w", v, dir, err)
		case err != nil:
			return "", fmt.Errorf("%s: %w", v, err)
		case !fi.IsDir():
			return "", fmt.Errorf("%s: %s is not a directory", v, dir)
		}
		// The backup opens it without following links; unreadable is said here, where the cause is clear.
		f, err := os.Open(dir)
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return "", fmt.Errorf("%s: cannot read %s (does the node-agent run as root with its capabilities, or privileged where SELinux needs it?): %w", v, dir, err)
			}
			return "", fmt.Errorf("%s: %w", v, err)
		}
		f.Close()
		return dir, nil
	}
	what := fmt.Sprintf("folder %q", name)
	if v.PVName != "" {
		what = fmt.Sprintf("folder %q of its PersistentVolume", name)
	}
	return "", fmt.Errorf("%s not found under %s (no %s in any plugin folder; is --host-pods-dir the kubelet's pods directory?): %w", v, volumes, what, ErrNotFound)
}

func rank(plugin string) int {
	switch plugin {
	case CSIDir:
		return 0
	case EmptyDirDir:
		return 1
	}
	return 2
}
