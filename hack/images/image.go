package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonRootUser runs every image: the distroless "nonroot" IDs, which the controller's pod security context
// also names. No /etc/passwd is needed for a numeric user.
const nonRootUser = "65532:65532"

// buildIndex makes one image per platform from bins (architecture → binary) and joins them in an OCI index.
func buildIndex(name string, bins map[string]string, labels map[string]string, created time.Time) (v1.ImageIndex, error) {
	var adds []mutate.IndexAddendum
	for _, arch := range slices.Sorted(maps.Keys(bins)) {
		img, err := buildImage(name, arch, bins[arch], labels, created)
		if err != nil {
			return nil, fmt.Errorf("linux/%s: %w", arch, err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: arch},
		}})
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx, adds...), nil
}

// buildImage puts the binary at /<name> in a single layer on an empty base and points the entrypoint at it.
func buildImage(name, arch, bin string, labels map[string]string, created time.Time) (v1.Image, error) {
	layerTar, err := binaryTar("/"+name, bin, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "hack/images: " + name + " for linux/" + arch,
	}})
	if err != nil {
		return nil, fmt.Errorf("append the layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Created = v1.Time{Time: created}
	cfg.Config.Entrypoint = []string{"/" + name}
	cfg.Config.User = nonRootUser
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = labels
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// binaryTar is an uncompressed tar holding the file at path bin as name, executable by everyone, owned by root
// so the non-root user cannot replace it; fixed times keep the layer reproducible.
func binaryTar(name, bin string, modTime time.Time) ([]byte, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", bin, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name[1:], Mode: 0o755, Size: int64(len(data)), ModTime: modTime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeLayout replaces dir with an OCI image layout holding idx, tagged tag.
func writeLayout(dir string, idx v1.ImageIndex, tag string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	p, err := layout.Write(filepath.Clean(dir), empty.Index)
	if err != nil {
		return fmt.Errorf("create the layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		return fmt.Errorf("write the index to %s: %w", dir, err)
	}
	return nil
}
