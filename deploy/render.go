package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Options are the install's settings; zero values keep the manifests' defaults.
type Options struct {
	// Namespace is where Straddle runs (default straddle).
	Namespace string
	// Image runs the controller and the node-agent; RestoreHelperImage is injected into restored pods.
	Image, RestoreHelperImage string
	// ImageRegistry rewrites the registry of every image, for clusters that pull only from their own.
	ImageRegistry string
	// DefaultVolumesToFsBackup backs up every pod volume unless excluded by annotation.
	DefaultVolumesToFsBackup bool
	// DefaultExcludedVolumes are volume names not backed up under default-all unless a pod's opt-in
	// annotation names them (service-mesh sidecars' volumes, say).
	DefaultExcludedVolumes []string
	// RestoreHelperRunAsUser and RestoreHelperRunAsGroup ("" for the default), RestoreHelperSecurityContext (a
	// YAML SecurityContext replacing the default one) and RestoreHelperImagePullSecrets go into the restore
	// helper's ConfigMap; the controller validates them.
	RestoreHelperRunAsUser, RestoreHelperRunAsGroup, RestoreHelperSecurityContext string
	RestoreHelperImagePullSecrets                                                 []string
	// NodeAgentPrivileged runs the node-agent privileged instead of with named capabilities, for hosts whose
	// SELinux policy keeps containers out of other pods' volumes.
	NodeAgentPrivileged bool
	// DefaultBackupTimeout and DefaultRestoreTimeout bound Backups and Restores that set no spec.timeout, as
	// Go durations ("6h"), passed to the controller as given; empty keeps the controller's default (4h).
	DefaultBackupTimeout, DefaultRestoreTimeout string
	// NodeAgentConcurrency bounds the volumes one node-agent works on at once (default 2).
	NodeAgentConcurrency int
	// HostPodsDir is the kubelet's pods directory on the nodes (default /var/lib/kubelet/pods).
	HostPodsDir string
	// NodeAgentCPURequest, NodeAgentMemoryRequest and NodeAgentMemoryLimit size the node-agent.
	NodeAgentCPURequest, NodeAgentMemoryRequest, NodeAgentMemoryLimit string
	// Storage is the default storage location, with its Secrets; none when its Provider is empty.
	Storage Storage
}

// DefaultNamespace is where Straddle is installed unless told otherwise.
const DefaultNamespace = "straddle"

// Render returns the install's objects in apply order (CRDs first) with opts applied.
func Render(opts Options) ([]*unstructured.Unstructured, error) {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.NodeAgentConcurrency < 0 {
		return nil, fmt.Errorf("node-agent concurrency %d must be at least 1", opts.NodeAgentConcurrency)
	}
	if opts.HostPodsDir != "" && !path.IsAbs(opts.HostPodsDir) {
		return nil, fmt.Errorf("host pods directory %q must be an absolute path", opts.HostPodsDir)
	}
	for _, q := range []string{opts.NodeAgentCPURequest, opts.NodeAgentMemoryRequest, opts.NodeAgentMemoryLimit} {
		if q != "" {
			if _, err := resource.ParseQuantity(q); err != nil {
				return nil, fmt.Errorf("resource quantity %q: %w", q, err)
			}
		}
	}
	for _, d := range []struct{ flag, value string }{{"default-backup-timeout", opts.DefaultBackupTimeout}, {"default-restore-timeout", opts.DefaultRestoreTimeout}} {
		if d.value == "" {
			continue
		}
		if v, err := time.ParseDuration(d.value); err != nil || v < 0 {
			return nil, fmt.Errorf("--%s %q: want a duration such as 4h (0 for none)", d.flag, d.value)
		}
	}
	if err := opts.Storage.validate(); err != nil {
		return nil, err
	}
	objs, err := load()
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if err := customize(o, opts); err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	// Last: the location is a custom resource, which can be applied only once its CRD is served.
	return append(objs, storageObjects(opts.Namespace, opts.Storage)...), nil
}

// load reads the objects the Kustomization lists, in its order.
func load() ([]*unstructured.Unstructured, error) {
	raw, err := Manifests.ReadFile("base/kustomization.yaml")
	if err != nil {
		return nil, err
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("kustomization: %w", err)
	}
	var objs []*unstructured.Unstructured
	for _, res := range k.Resources {
		data, err := Manifests.ReadFile(path.Clean(path.Join("base", res)))
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", res, err)
			}
			if len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
	}
	return objs, nil
}

func customize(o *unstructured.Unstructured, opts Options) error {
	switch {
	case o.GetKind() == "Namespace":
		o.SetName(opts.Namespace)
	case o.GetNamespace() != "":
		o.SetNamespace(opts.Namespace)
	}
	if o.GetKind() == "ClusterRoleBinding" || o.GetKind() == "RoleBinding" {
		subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
		for _, s := range subjects {
			s.(map[string]any)["namespace"] = opts.Namespace
		}
		if err := unstructured.SetNestedSlice(o.Object, subjects, "subjects"); err != nil {
			return err
		}
	}
	switch o.GetKind() {
	case "Deployment", "DaemonSet":
		return customizeWorkload(o, opts)
	case "MutatingWebhookConfiguration":
		// Cluster-scoped, but it calls the Service in the install namespace.
		hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
		for _, h := range hooks {
			if svc, ok, _ := unstructured.NestedMap(h.(map[string]any), "clientConfig", "service"); ok {
				svc["namespace"] = opts.Namespace
				if err := unstructured.SetNestedMap(h.(map[string]any), svc, "clientConfig", "service"); err != nil {
					return err
				}
			}
		}
		return unstructured.SetNestedSlice(o.Object, hooks, "webhooks")
	case "ConfigMap":
		if o.GetName() == "straddle-restore-helper" {
			return customizeRestoreHelper(o, opts)
		}
	}
	return nil
}

// customizeRestoreHelper writes the restore helper's settings into its ConfigMap; keys not given stay out,
// so the controller's defaults apply.
func customizeRestoreHelper(o *unstructured.Unstructured, opts Options) error {
	img, _, _ := unstructured.NestedString(o.Object, "data", "image")
	if err := unstructured.SetNestedField(o.Object, image(img, opts.RestoreHelperImage, opts.ImageRegistry), "data", "image"); err != nil {
		return err
	}
	for key, v := range map[string]string{"runAsUser": opts.RestoreHelperRunAsUser, "runAsGroup": opts.RestoreHelperRunAsGroup,
		"securityContext": opts.RestoreHelperSecurityContext, "imagePullSecrets": strings.Join(opts.RestoreHelperImagePullSecrets, ",")} {
		if v == "" {
			continue
		}
		if err := unstructured.SetNestedField(o.Object, v, "data", key); err != nil {
			return err
		}
	}
	return nil
}

func customizeWorkload(o *unstructured.Unstructured, opts Options) error {
	spec := []string{"spec", "template", "spec"}
	containers, _, _ := unstructured.NestedSlice(o.Object, append(spec, "containers")...)
	for _, c := range containers {
		cm := c.(map[string]any)
		cm["image"] = image(cm["image"].(string), opts.Image, opts.ImageRegistry)
		args, _, _ := unstructured.NestedStringSlice(cm, "args")
		args = setFlag(args, "--namespace", opts.Namespace)
		if o.GetKind() == "Deployment" && opts.DefaultVolumesToFsBackup {
			args = setFlag(args, "--default-volumes-to-fs-backup", "true")
		}
		if o.GetKind() == "Deployment" && len(opts.DefaultExcludedVolumes) > 0 {
			args = setFlag(args, "--default-excluded-volumes", strings.Join(opts.DefaultExcludedVolumes, ","))
		}
		if o.GetKind() == "Deployment" && opts.DefaultBackupTimeout != "" {
			args = setFlag(args, "--default-backup-timeout", opts.DefaultBackupTimeout)
		}
		if o.GetKind() == "Deployment" && opts.DefaultRestoreTimeout != "" {
			args = setFlag(args, "--default-restore-timeout", opts.DefaultRestoreTimeout)
		}
		if o.GetKind() == "DaemonSet" {
			if opts.NodeAgentPrivileged {
				cm["securityContext"] = map[string]any{"privileged": true, "runAsUser": int64(0)}
			}
			if opts.NodeAgentConcurrency > 0 {
				args = setFlag(args, "--concurrency", strconv.Itoa(opts.NodeAgentConcurrency))
			}
			for _, r := range []struct{ value, section, name string }{
				{opts.NodeAgentCPURequest, "requests", "cpu"},
				{opts.NodeAgentMemoryRequest, "requests", "memory"},
				{opts.NodeAgentMemoryLimit, "limits", "memory"},
			} {
				if r.value != "" {
					if err := unstructured.SetNestedField(cm, r.value, "resources", r.section, r.name); err != nil {
						return err
					}
				}
			}
		}
		if err := unstructured.SetNestedStringSlice(cm, args, "args"); err != nil {
			return err
		}
	}
	if err := unstructured.SetNestedSlice(o.Object, containers, append(spec, "containers")...); err != nil {
		return err
	}
	volumes, _, _ := unstructured.NestedSlice(o.Object, append(spec, "volumes")...)
	if o.GetKind() == "DaemonSet" && opts.HostPodsDir != "" {
		for _, v := range volumes {
			if hp, ok := v.(map[string]any)["hostPath"].(map[string]any); ok && v.(map[string]any)["name"] == "host-pods" {
				hp["path"] = opts.HostPodsDir
			}
		}
	}
	if opts.Storage.Provider == "filesystem" {
		// A directory location is read and written by the controller (metadata) and every node-agent
		// (repositories) at the same path; on a cluster it is a shared mount (NFS, say) on every node.
		volumes = append(volumes, map[string]any{"name": locationVolume,
			"hostPath": map[string]any{"path": opts.Storage.Path, "type": "DirectoryOrCreate"}})
		for _, c := range containers {
			cm := c.(map[string]any)
			mounts, _, _ := unstructured.NestedSlice(cm, "volumeMounts")
			mounts = append(mounts, map[string]any{"name": locationVolume, "mountPath": opts.Storage.Path})
			if err := unstructured.SetNestedSlice(cm, mounts, "volumeMounts"); err != nil {
				return err
			}
		}
		if err := unstructured.SetNestedSlice(o.Object, containers, append(spec, "containers")...); err != nil {
			return err
		}
	}
	if len(volumes) == 0 {
		return nil
	}
	return unstructured.SetNestedSlice(o.Object, volumes, append(spec, "volumes")...)
}

// locationVolume names the mount of a filesystem storage location in the controller and node-agent pods.
const locationVolume = "backup-location"

// setFlag sets --name=value in args: in the place of an earlier value, so the manifests' flag order stays put
// (the Helm chart renders the same args in the same order), or appended.
func setFlag(args []string, name, value string) []string {
	matches := func(a string) bool { return a == name || strings.HasPrefix(a, name+"=") }
	i := slices.IndexFunc(args, matches)
	if i < 0 {
		return append(slices.Clone(args), name+"="+value)
	}
	out := append(slices.Clone(args[:i]), name+"="+value)
	return append(out, slices.DeleteFunc(slices.Clone(args[i+1:]), matches)...)
}

// image picks the override or the default, then moves it to registry if one is given: the registry part of
// the reference (a first component with a dot, a colon or "localhost") is replaced, otherwise prepended.
func image(def, override, registry string) string {
	ref := def
	if override != "" {
		ref = override
	}
	if registry == "" {
		return ref
	}
	registry = strings.TrimSuffix(registry, "/")
	if first, rest, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return registry + "/" + rest
	}
	return registry + "/" + ref
}

// Images lists every image the objects use, sorted: what an offline cluster must mirror.
func Images(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment", "DaemonSet":
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			for _, c := range containers {
				out = append(out, c.(map[string]any)["image"].(string))
			}
		case "ConfigMap":
			if img, ok, _ := unstructured.NestedString(o.Object, "data", "image"); ok {
				out = append(out, img)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// YAML writes the objects as one multi-document stream, for --dry-run -o yaml and GitOps.
func YAML(w io.Writer, objs []*unstructured.Unstructured) error {
	for i, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}
