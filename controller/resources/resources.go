// Package resources writes the Kubernetes objects of a backup's namespaces into one compressed archive: every
// namespaced kind the API server serves and lets us list, one JSON document per object.
package resources

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// ArchiveName is the archive's object name in a backup's folder (contract: restore reads it).
const ArchiveName = "resources.tar.zst"

// skipped are resources not worth backing up, by "resource.group" (core group: just "resource"):
//   - events, events.events.k8s.io: a record of the past, not state; restoring them would replay old news.
//   - endpoints, endpointslices.discovery.k8s.io: derived from Services and Pods by their controllers,
//     and stale pod IPs would point traffic at nothing.
//   - leases.coordination.k8s.io: leader election and heartbeats, meaningful only to live processes.
//   - pods.metrics.k8s.io: point-in-time usage readings served by metrics-server, not objects.
//   - controllerrevisions.apps is kept: StatefulSet and DaemonSet rollout history is state.
//
// Straddle's own kinds (group straddle.io) are left out too: a backup's Backup and PodVolumeBackups are written
// beside the archive as metadata documents, and restoring Backups into a cluster would start backups.
var skipped = map[string]bool{
	"events":                          true,
	"events.events.k8s.io":            true,
	"endpoints":                       true,
	"endpointslices.discovery.k8s.io": true,
	"leases.coordination.k8s.io":      true,
	"pods.metrics.k8s.io":             true,
}

const straddleGroup = "straddle.io"

// Collector lists resources through the discovery and dynamic clients.
type Collector struct {
	Discovery discovery.DiscoveryInterface
	Dynamic   dynamic.Interface
	// Now stamps the archive's entries; nil means time.Now.
	Now func() time.Time
	// SecretsExcludedIn is the install namespace: its Secrets (the repository password, the storage
	// credentials, the webhook's key) are never written, since the archive goes to the very storage they
	// protect, unencrypted. A new cluster gets them from the install (--repository-password-file).
	SecretsExcludedIn string
}

// Result is what Write stored: object counts per resource, in resource order, and problems that did not stop
// it (an API group whose discovery failed is left out, with a warning).
type Result struct {
	Counts   []v1.ResourceCount
	Warnings []string
}

// Write lists every namespaced, listable resource in namespaces and writes them to out as a zstd-compressed
// tar with entries <resource>.<group>/<namespace>/<name>.json (the core group as just <resource>).
func (c *Collector) Write(ctx context.Context, namespaces []string, out io.Writer) (Result, error) {
	var res Result
	lists, err := discovery.ServerPreferredNamespacedResourcesWithContext(ctx, discovery.ToDiscoveryInterfaceWithContext(c.Discovery))
	var groupErr *discovery.ErrGroupDiscoveryFailed
	switch {
	case errors.As(err, &groupErr):
		// An aggregated API that is down must not stop every backup; say what was left out.
		for gv, e := range groupErr.Groups {
			res.Warnings = append(res.Warnings, fmt.Sprintf("resources of API group %s were not backed up: discovery failed: %v", gv, e))
		}
		slices.Sort(res.Warnings)
	case err != nil:
		return res, fmt.Errorf("discover the API server's resources: %w", err)
	}
	type target struct {
		gvr  schema.GroupVersionResource
		name string // resource.group, as kubectl prints it
	}
	var targets []target
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return res, fmt.Errorf("discovery returned group version %q: %w", l.GroupVersion, err)
		}
		if gv.Group == straddleGroup {
			continue
		}
		for _, r := range l.APIResources {
			name := r.Name
			if gv.Group != "" {
				name += "." + gv.Group
			}
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || skipped[name] {
				continue
			}
			targets = append(targets, target{gv.WithResource(r.Name), name})
		}
	}
	slices.SortFunc(targets, func(a, b target) int { return strings.Compare(a.name, b.name) })

	zw, err := zstd.NewWriter(out)
	if err != nil {
		return res, fmt.Errorf("start zstd: %w", err)
	}
	tw := tar.NewWriter(zw)
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	stamp := now().UTC().Truncate(time.Second)
	// Few namespaces are listed one by one; many (a backup of the whole cluster) with one paged list per
	// resource, instead of one request per resource per namespace.
	scopes, wanted := namespaces, map[string]bool(nil)
	if len(namespaces) > perNamespaceLimit {
		scopes, wanted = []string{metav1.NamespaceAll}, map[string]bool{}
		for _, ns := range namespaces {
			wanted[ns] = true
		}
	}
	for _, t := range targets {
		n := 0
		for _, scope := range scopes {
			err := c.list(ctx, t.gvr, scope, func(obj *unstructured.Unstructured) error {
				if wanted != nil && !wanted[obj.GetNamespace()] {
					return nil
				}
				if t.name == "secrets" && c.SecretsExcludedIn != "" && obj.GetNamespace() == c.SecretsExcludedIn {
					return nil
				}
				n++
				return writeEntry(tw, t.name, obj, stamp)
			})
			if err != nil {
				return res, fmt.Errorf("list %s in namespace %q: %w", t.name, scope, err)
			}
		}
		if n > 0 {
			res.Counts = append(res.Counts, v1.ResourceCount{Resource: t.name, Count: n})
		}
	}
	if err := tw.Close(); err != nil {
		return res, fmt.Errorf("finish archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return res, fmt.Errorf("finish zstd: %w", err)
	}
	return res, nil
}

// perNamespaceLimit is the most namespaces listed one by one.
const perNamespaceLimit = 8

// pageSize bounds the objects one list response holds, and so the memory of a list of a large resource.
const pageSize = 500

// list calls fn for every object of gvr in namespace (all namespaces for ""), a page at a time.
func (c *Collector) list(ctx context.Context, gvr schema.GroupVersionResource, namespace string, fn func(*unstructured.Unstructured) error) error {
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		page, err := c.Dynamic.Resource(gvr).Namespace(namespace).List(ctx, opts)
		if err != nil {
			return err
		}
		for i := range page.Items {
			if err := fn(&page.Items[i]); err != nil {
				return err
			}
		}
		if opts.Continue = page.GetContinue(); opts.Continue == "" {
			return nil
		}
	}
}

// writeEntry adds one object to the archive as <resource>/<namespace>/<name>.json.
func writeEntry(tw *tar.Writer, resource string, obj *unstructured.Unstructured, stamp time.Time) error {
	// Managed fields record who set what, for server-side apply; a restore recreates objects, so they are
	// bulk without use.
	obj.SetManagedFields(nil)
	doc, err := json.Marshal(obj.Object)
	if err != nil {
		return fmt.Errorf("encode %s %s/%s: %w", resource, obj.GetNamespace(), obj.GetName(), err)
	}
	hdr := &tar.Header{Name: resource + "/" + obj.GetNamespace() + "/" + obj.GetName() + ".json", Mode: 0o644, Size: int64(len(doc)), ModTime: stamp, Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	if _, err := tw.Write(doc); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}

// Entry is one object read back from an archive.
type Entry struct {
	Name string
	Data []byte
}

// Read returns every entry of an archive Write made.
func Read(r io.Reader) ([]Entry, error) {
	zr, err := zstd.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read zstd: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var out []Entry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("read archive entry %s: %w", hdr.Name, err)
		}
		out = append(out, Entry{Name: hdr.Name, Data: data})
	}
}
