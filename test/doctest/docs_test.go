package doctest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// commandTimeout bounds one documented command; they are small local examples.
const commandTimeout = 2 * time.Minute

// Password is STRADDLE_PASSWORD for the pages' commands: a page that creates a repository uses it.
const Password = "doctest-password"

// ownTest names the pages whose commands need more than the straddle binary (a registry, image archives,
// helm): their own tests run them with what they need.
var ownTest = map[string]string{
	"docs/air-gapped.md": "test/airgap (TestAirGappedDoc)",
}

// Every page's runnable blocks run, in order, in one scratch folder per page, with the straddle binary of
// this checkout first on PATH: the docs cannot drift from the CLI.
func TestDocsCommands(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(root, "README.md"))
	bin := buildStraddle(t, root)
	ran := 0
	for _, page := range pages {
		blocks, err := Blocks(page)
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) == 0 {
			continue
		}
		rel, _ := filepath.Rel(root, page)
		if _, ok := ownTest[rel]; ok {
			continue
		}
		t.Run(rel, func(t *testing.T) {
			dir := t.TempDir()
			env := pageEnv(bin, dir)
			for _, b := range blocks {
				for _, cmd := range b.Commands {
					out, err := run(dir, env, cmd)
					if err != nil {
						t.Fatalf("%s:%d: %s: %v\n%s", rel, b.Line, cmd, err, out)
					}
					ran++
				}
			}
		})
	}
	if ran == 0 {
		t.Error("no page has a runnable block (```sh doctest)")
	}
}

// buildStraddle builds this checkout's straddle into a folder of its own, to put first on PATH.
func buildStraddle(t *testing.T, root string) string {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(bin, "straddle"), "./cmd/straddle")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build straddle: %v\n%s", err, out)
	}
	return bin
}

// pageEnv is a small, fixed environment: no cluster (a kubeconfig that does not exist), no credentials but
// the repository password, and a HOME of the page's own.
func pageEnv(bin, dir string) []string {
	return []string{
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + dir,
		"KUBECONFIG=" + filepath.Join(dir, "no-cluster.kubeconfig"),
		"STRADDLE_PASSWORD=" + Password,
		"LANG=C.UTF-8",
	}
}

func run(dir string, env []string, command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-e", "-c", command)
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimRight(out.String(), "\n"), err
}
