//go:build e2e

// Package e2e runs the whole system the way a cluster runs it: a real kube-apiserver and etcd (envtest), a
// real MinIO, `straddle install`, `straddle controller` and two `straddle node-agent` processes (nodes node-a
// and node-b, each with its own host pods directory). The only fake is a kubelet simulator in the test
// process that binds pods, makes and fills their volume folders, and marks them Running. TestMain builds the
// straddle binary once; every test starts its own cluster with startCluster.
//
//	make test-e2e
//
// Missing tools fail the run with the make target that builds them; nothing is skipped silently.
package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// straddleBin and restoreHelperBin are the binaries TestMain built; moduleRoot is the folder of go.mod.
var straddleBin, restoreHelperBin, moduleRoot string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	root, err := findModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	moduleRoot = root
	// envtest logs through controller-runtime; its start-up chatter is not the test's output.
	ctrllog.SetLogger(ctrllog.Log.WithSink(ctrllog.NullLogSink{}))
	if err := checkTools(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "straddle-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	straddleBin = filepath.Join(tmp, "straddle")
	restoreHelperBin = filepath.Join(tmp, "straddle-restore-helper")
	// The simulated kubelet runs the real restore helper as a restored pod's restore-wait init container.
	for bin, pkg := range map[string]string{straddleBin: "./cmd/straddle", restoreHelperBin: "./cmd/straddle-restore-helper"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s in %s: %v\n%s", pkg, root, err, out)
			return 1
		}
	}
	return m.Run()
}

// assetsDir is where envtest finds kube-apiserver and etcd: $KUBEBUILDER_ASSETS, else bin/ of the module.
func assetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(moduleRoot, "bin")
}

// minioBin is the MinIO server miniotest runs: $STRADDLE_MINIO_BIN, else bin/minio of the module.
func minioBin() string {
	if p := os.Getenv("STRADDLE_MINIO_BIN"); p != "" {
		return p
	}
	return filepath.Join(moduleRoot, "bin", "minio")
}

// checkTools fails the whole run up front, naming the make target, when a server binary is missing: a tier
// that should have run must never pass by skipping.
func checkTools() error {
	var missing []error
	for _, tool := range []struct{ path, target string }{
		{filepath.Join(assetsDir(), "kube-apiserver"), "make bin/kube-apiserver"},
		{filepath.Join(assetsDir(), "etcd"), "make bin/etcd"},
		{minioBin(), "make bin/minio"},
	} {
		if fi, err := os.Stat(tool.path); err != nil || fi.IsDir() {
			missing = append(missing, fmt.Errorf("no %s: run %s (or set KUBEBUILDER_ASSETS / STRADDLE_MINIO_BIN)", tool.path, tool.target))
		}
	}
	if len(missing) > 0 {
		// miniotest reads the variable itself; point it at what was checked.
		return errors.Join(missing...)
	}
	return os.Setenv("STRADDLE_MINIO_BIN", minioBin())
}

func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}
