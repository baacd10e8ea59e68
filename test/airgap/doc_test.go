//go:build integration

package airgap_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/straddle-io/straddle/test/doctest"
)

// TestAirGappedDoc runs the runnable commands of docs/air-gapped.md from the repository's top folder against
// a real registry, with straddle and helm on PATH, then checks the images it pushed resolve.
func TestAirGappedDoc(t *testing.T) {
	requireArchives(t)
	helm := tool(t, "helm", "STRADDLE_HELM_BIN")
	reg := startRegistry(t)
	blocks, err := doctest.Blocks(filepath.Join(root, "docs", "air-gapped.md"))
	if err != nil {
		t.Fatal(err)
	}
	var commands []string
	for _, b := range blocks {
		commands = append(commands, b.Commands...)
	}
	joined := strings.Join(commands, "\n")
	for _, want := range []string{"straddle images push", "straddle images --image-registry", "helm template", "straddle install"} {
		if !strings.Contains(joined, want) {
			t.Errorf("docs/air-gapped.md runs no %q command", want)
		}
	}
	top, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"PATH="+filepath.Dir(straddleBin)+string(os.PathListSeparator)+filepath.Dir(helm)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"REGISTRY="+reg, "ARCHIVES="+archiveDir)
	for _, b := range blocks {
		for _, c := range b.Commands {
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", c)
			cmd.Dir, cmd.Env = top, env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("docs/air-gapped.md:%d: %s: %v\n%s", b.Line, c, err, out)
			}
			t.Logf("$ %s\n%s", c, out)
		}
	}
	for _, r := range strings.Fields(straddle(t, "images", "--image-registry", reg)) {
		ref, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Get(ref); err != nil {
			t.Errorf("%s, pushed by the doc's commands, does not resolve: %v", r, err)
		}
	}
}
