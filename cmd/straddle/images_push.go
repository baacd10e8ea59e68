package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/deploy"
)

// DefaultArchiveDir is where `make images` writes the image archives.
const DefaultArchiveDir = "out/images"

type imagesPushOptions struct {
	to, archiveDir string
	insecure       bool
}

func newImagesPushCmd() *cobra.Command {
	o := &imagesPushOptions{}
	cmd := &cobra.Command{
		Use:   "push --to REGISTRY",
		Short: "Push the image archives (make images) to REGISTRY under the refs `straddle images --image-registry REGISTRY` prints",
		Long: "Push the multi-arch image archives `make images` writes (OCI image layouts, one folder per image) to\n" +
			"REGISTRY, each under the ref `straddle install --image-registry REGISTRY` pulls. Credentials come from the\n" +
			"docker config file (~/.docker/config.json, $DOCKER_CONFIG), as `docker login` or `crane auth login` write it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.to, "to", "", "registry to push to, host[:port][/path] (required)")
	cmd.Flags().StringVar(&o.archiveDir, "archive-dir", DefaultArchiveDir, "folder holding one OCI image layout per image (straddle/, straddle-restore-helper/)")
	cmd.Flags().BoolVar(&o.insecure, "insecure", false, "allow plain HTTP and unverified TLS certificates")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func (o *imagesPushOptions) run(ctx context.Context, out io.Writer) error {
	objs, err := deploy.Render(deploy.Options{ImageRegistry: o.to})
	if err != nil {
		return err
	}
	var nameOpts []name.Option
	transport := remote.DefaultTransport
	if o.insecure {
		nameOpts = append(nameOpts, name.Insecure)
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure
		transport = t
	}
	for _, img := range deploy.Images(objs) {
		ref, err := name.ParseReference(img, nameOpts...)
		if err != nil {
			return fmt.Errorf("image %s: %w", img, err)
		}
		// The archive of an image is named after the last component of its repository.
		dir := filepath.Join(o.archiveDir, path.Base(ref.Context().RepositoryStr()))
		idx, err := readArchive(dir)
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx), remote.WithTransport(transport),
			remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("push %s to %s: %w", dir, ref, err)
		}
		digest, err := idx.Digest()
		if err != nil {
			return fmt.Errorf("digest of %s: %w", dir, err)
		}
		fmt.Fprintf(out, "pushed %s (%s)\n", ref, digest)
	}
	return nil
}

// readArchive opens the OCI image layout in dir and returns the one multi-arch index it holds.
func readArchive(dir string) (v1.ImageIndex, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("open image archive %s (make images writes it): %w", dir, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("read image archive %s: %w", dir, err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read image archive %s: %w", dir, err)
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return nil, fmt.Errorf("image archive %s: want exactly one multi-arch index, found %d entries", dir, len(m.Manifests))
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("read the index of image archive %s: %w", dir, err)
	}
	return idx, nil
}
