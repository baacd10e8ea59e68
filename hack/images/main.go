// Command images builds Straddle's OCI image archives without a container engine: for each image it
// cross-compiles a static binary per platform, puts it alone in one layer on an empty base, joins the
// platforms in one multi-arch index, writes the index as an OCI image layout directory <out>/<image>/, and
// writes an SPDX SBOM of the binary's Go modules beside it as <out>/<image>.spdx.json. `make images` runs it;
// `straddle images push` pushes the result.
//
// It lives in the main module, not hack/tools: it builds the main module's commands and shares its
// go-containerregistry version with `straddle images push`, which reads what it writes.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// spec is one image: the command it packs and how the binary is linked.
type spec struct {
	name, pkg, ldflags string
}

// platforms are the architectures every image carries.
var platforms = []string{"amd64", "arm64"}

func main() {
	out := flag.String("out", "out/images", "directory the layouts and SBOMs are written to")
	version := flag.String("version", "dev", "org.opencontainers.image.version label and the binary's version")
	revision := flag.String("revision", "", "org.opencontainers.image.revision label: the source's git commit")
	flag.Parse()
	if err := run(*out, *version, *revision); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(out, version, revision string) error {
	specs := []spec{
		{name: "straddle", pkg: "./cmd/straddle", ldflags: "-s -w -X main.version=" + version},
		{name: "straddle-restore-helper", pkg: "./cmd/straddle-restore-helper", ldflags: "-s -w"},
	}
	tmp, err := os.MkdirTemp("", "straddle-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	created := buildTime()
	for _, s := range specs {
		bins := map[string]string{}
		for _, arch := range platforms {
			bin := filepath.Join(tmp, s.name+"-"+arch)
			if err := goBuild(s, arch, bin); err != nil {
				return err
			}
			bins[arch] = bin
		}
		labels := map[string]string{
			"org.opencontainers.image.title":    s.name,
			"org.opencontainers.image.source":   "https://github.com/straddle-io/straddle",
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.revision": revision,
		}
		idx, err := buildIndex(s.name, bins, labels, created)
		if err != nil {
			return fmt.Errorf("image %s: %w", s.name, err)
		}
		dir := filepath.Join(out, s.name)
		if err := writeLayout(dir, idx, version); err != nil {
			return fmt.Errorf("image %s: %w", s.name, err)
		}
		// The module set is the same on every platform (no platform-specific requirements), so one SBOM of
		// the amd64 binary describes the image.
		sbom, err := spdxFromBinary(s.name, version, bins["amd64"], created)
		if err != nil {
			return fmt.Errorf("image %s: %w", s.name, err)
		}
		if err := os.WriteFile(filepath.Join(out, s.name+".spdx.json"), sbom, 0o644); err != nil {
			return fmt.Errorf("write the SBOM of %s: %w", s.name, err)
		}
		fmt.Printf("%s: %s (%s.spdx.json)\n", s.name, dir, s.name)
	}
	return nil
}

// goBuild cross-compiles one static binary.
func goBuild(s spec, arch, bin string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", s.ldflags, "-o", bin, s.pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for linux/%s: %w", s.pkg, arch, err)
	}
	return nil
}

// buildTime is SOURCE_DATE_EPOCH when set (reproducible builds), else now.
func buildTime() time.Time {
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		var sec int64
		if _, err := fmt.Sscan(v, &sec); err == nil {
			return time.Unix(sec, 0).UTC()
		}
	}
	return time.Now().UTC().Truncate(time.Second)
}
