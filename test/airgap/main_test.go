//go:build integration

// Package airgap_test proves the offline install path for real: the image archives `make images` writes are
// pushed by `straddle images push` into a real registry (bin/registry) and resolve there for every platform;
// the Helm chart renders what `straddle install` renders, and the API server accepts it; and the commands of
// docs/air-gapped.md run.
package airgap_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// root is the repository's top folder, relative to this package.
const root = "../.."

// Set by TestMain.
var (
	straddleBin string
	archiveDir  string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "straddle-airgap-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	straddleBin = filepath.Join(tmp, "straddle")
	build := exec.Command("go", "build", "-o", straddleBin, "../../cmd/straddle")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build straddle: %v\n%s", err, out)
		return 1
	}
	archiveDir = os.Getenv("STRADDLE_IMAGES_DIR")
	if archiveDir == "" {
		archiveDir = filepath.Join(root, "out", "images")
	}
	if archiveDir, err = filepath.Abs(archiveDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// tool returns the path of a bin/ tool, failing the test with the make target that builds it when missing.
func tool(t *testing.T, name, envVar string) string {
	t.Helper()
	p := os.Getenv(envVar)
	if p == "" {
		p = filepath.Join(root, "bin", name)
	}
	p, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found at %s (set %s, or run make bin/%s): %v", name, p, envVar, name, err)
	}
	return p
}

// requireArchives fails the test unless `make images` has written the archives.
func requireArchives(t *testing.T) {
	t.Helper()
	for _, img := range []string{"straddle", "straddle-restore-helper"} {
		if _, err := os.Stat(filepath.Join(archiveDir, img, "index.json")); err != nil {
			t.Fatalf("image archive %s missing in %s (run make images, or set STRADDLE_IMAGES_DIR): %v", img, archiveDir, err)
		}
	}
}

// startRegistry runs bin/registry on a free 127.0.0.1 port with a temporary storage folder and returns its
// host:port once it answers.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin := tool(t, "registry", "STRADDLE_REGISTRY_BIN")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	config := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("registry log:\n%s", tail(string(b), 4000))
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry on %s never answered /v2/: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// straddle runs the straddle binary and returns its standard output.
func straddle(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(straddleBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("straddle %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
