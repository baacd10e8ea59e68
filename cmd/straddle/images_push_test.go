package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestImagesPushUsesTheRefsImagesPrints(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	reg := strings.TrimPrefix(srv.URL, "http://") + "/mirror"
	archives := t.TempDir()
	digests := map[string]string{}
	for _, img := range []string{"straddle", "straddle-restore-helper"} {
		idx, err := random.Index(64, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		p, err := layout.Write(filepath.Join(archives, img), empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendIndex(idx); err != nil {
			t.Fatal(err)
		}
		d, _ := idx.Digest()
		digests[img] = d.String()
	}

	var out bytes.Buffer
	o := &imagesPushOptions{to: reg, archiveDir: archives}
	if err := o.run(context.Background(), &out); err != nil {
		t.Fatalf("push: %v", err)
	}
	var listed bytes.Buffer
	if err := (&imagesOptions{renderFlags: renderFlags{}}).runWith(reg, &listed); err != nil {
		t.Fatal(err)
	}
	refs := strings.Fields(listed.String())
	if len(refs) != 2 {
		t.Fatalf("images printed %q", refs)
	}
	for _, r := range refs {
		ref, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref)
		if err != nil {
			t.Fatalf("%s not in the registry: %v", r, err)
		}
		img := filepath.Base(ref.Context().RepositoryStr())
		if desc.Digest.String() != digests[img] {
			t.Errorf("%s is %s, want the archive's index %s", r, desc.Digest, digests[img])
		}
	}
}

func TestImagesPushNeedsTheArchives(t *testing.T) {
	o := &imagesPushOptions{to: "127.0.0.1:1", archiveDir: filepath.Join(t.TempDir(), "none")}
	err := o.run(context.Background(), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "make images") {
		t.Fatalf("push without archives: %v, want a pointer to make images", err)
	}
	if _, statErr := os.Stat(o.archiveDir); statErr == nil {
		t.Error("push created the archive folder")
	}
}
