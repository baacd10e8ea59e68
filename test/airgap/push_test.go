//go:build integration

package airgap_test

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// maxRestoreHelperSize bounds the restore-helper image (config, manifest and layer, compressed): it is pulled
// onto every node a restored pod lands on, before the pod can start.
const maxRestoreHelperSize = 5 << 20

var platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// TestPushResolvesEveryRefForEveryPlatform pushes the archives to a real registry and resolves every ref
// `straddle images --image-registry` prints there, for both platforms.
func TestPushResolvesEveryRefForEveryPlatform(t *testing.T) {
	requireArchives(t)
	reg := startRegistry(t)

	out := straddle(t, "images", "push", "--to", reg, "--archive-dir", archiveDir)
	refs := strings.Fields(straddle(t, "images", "--image-registry", reg))
	if len(refs) != 2 {
		t.Fatalf("straddle images printed %q, want the straddle and restore-helper images", refs)
	}
	for _, r := range refs {
		if !strings.Contains(out, "pushed "+r+" ") {
			t.Errorf("push output does not name %s:\n%s", r, out)
		}
		ref, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref)
		if err != nil {
			t.Fatalf("resolve %s: %v", r, err)
		}
		if !desc.MediaType.IsIndex() {
			t.Fatalf("%s is a %s, want a multi-arch index", r, desc.MediaType)
		}
		image := path.Base(ref.Context().RepositoryStr())
		for _, p := range platforms {
			img, err := remote.Image(ref, remote.WithPlatform(p))
			if err != nil {
				t.Fatalf("resolve %s for %s: %v", r, p, err)
			}
			checkImage(t, r, image, p, img)
		}
	}
}

// checkImage checks what every Straddle image promises: its platform, a non-root user, the entrypoint, the
// version labels and one layer.
func checkImage(t *testing.T, ref, image string, p v1.Platform, img v1.Image) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("%s %s config: %v", ref, p, err)
	}
	if cfg.OS != p.OS || cfg.Architecture != p.Architecture {
		t.Errorf("%s for %s has config platform %s/%s", ref, p, cfg.OS, cfg.Architecture)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("%s %s runs as %q, want 65532:65532", ref, p, cfg.Config.User)
	}
	if want := []string{"/" + image}; !slices.Equal(cfg.Config.Entrypoint, want) {
		t.Errorf("%s %s entrypoint %q, want %q", ref, p, cfg.Config.Entrypoint, want)
	}
	for _, l := range []string{"org.opencontainers.image.version", "org.opencontainers.image.revision"} {
		if cfg.Config.Labels[l] == "" {
			t.Errorf("%s %s has no label %s (labels %v)", ref, p, l, cfg.Config.Labels)
		}
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%s %s: %d layers (%v), want 1", ref, p, len(layers), err)
	}
	if image == "straddle-restore-helper" {
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		size := m.Config.Size
		for _, l := range m.Layers {
			size += l.Size
		}
		if size >= maxRestoreHelperSize {
			t.Errorf("%s %s is %d bytes, want under %d", ref, p, size, maxRestoreHelperSize)
		}
		t.Logf("%s %s: %d bytes", ref, p, size)
	}
}

// TestRestoreHelperImageRuns extracts the restore helper from the archive's amd64 layer and runs it.
func TestRestoreHelperImageRuns(t *testing.T) {
	requireArchives(t)
	p, err := layout.FromPath(filepath.Join(archiveDir, "straddle-restore-helper"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("archive index: %d entries (%v), want 1", len(m.Manifests), err)
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Architecture == "amd64" {
			if img, err = idx.Image(d.Digest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if img == nil {
		t.Fatal("the restore-helper archive has no linux/amd64 image")
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	bin := filepath.Join(t.TempDir(), "straddle-restore-helper")
	tr := tar.NewReader(rc)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "straddle-restore-helper" {
			t.Errorf("unexpected file %s in the layer", h.Name)
			continue
		}
		f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		f.Close()
		found = true
	}
	if !found {
		t.Fatal("the layer has no /straddle-restore-helper")
	}
	// The flag package answers --help with the usage on stderr and exit code 2.
	out, err := exec.Command(bin, "--help").CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 2) {
		t.Fatalf("run the extracted binary: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "-restore-uid") {
		t.Errorf("--help printed no usage:\n%s", out)
	}
}
