package main

import (
	"debug/buildinfo"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"
)

func TestSPDXListsEveryModule(t *testing.T) {
	info := &buildinfo.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/straddle-io/straddle", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/spf13/cobra", Version: "v1.10.2"},
			{Path: "example.com/old", Version: "v1.0.0", Replace: &debug.Module{Path: "example.com/new", Version: "v2.0.0"}},
		}}
	b, err := spdxFromBuildInfo("straddle", "v1.2.3", info, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	var doc spdxDocument
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || len(doc.Packages) != 3 || len(doc.Relationships) != 3 {
		t.Fatalf("document %+v", doc)
	}
	want := []string{"pkg:golang/github.com/straddle-io/straddle@v1.2.3", "pkg:golang/github.com/spf13/cobra@v1.10.2", "pkg:golang/example.com/new@v2.0.0"}
	for i, p := range doc.Packages {
		if got := p.ExternalRefs[0].ReferenceLocator; got != want[i] {
			t.Errorf("package %d purl %s, want %s", i, got, want[i])
		}
	}
}

func TestImageHoldsOnlyTheBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	idx, err := buildIndex("tool", map[string]string{"amd64": bin, "arm64": bin}, map[string]string{"org.opencontainers.image.version": "v1"}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 2 || m.Manifests[0].Platform.Architecture != "amd64" || m.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("index %+v", m.Manifests)
	}
	img, err := idx.Image(m.Manifests[1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "arm64" || cfg.Config.User != nonRootUser || cfg.Config.Entrypoint[0] != "/tool" || cfg.Config.Labels["org.opencontainers.image.version"] != "v1" {
		t.Errorf("config %+v", cfg)
	}
	dir := filepath.Join(t.TempDir(), "tool")
	if err := writeLayout(dir, idx, "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		t.Error(err)
	}
}
