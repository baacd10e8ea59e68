package controller

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// backedUpPod is a pod of a stored backup that a restore would restore, with its controller and the volumes
// it has usable snapshots of: what a pod a restored controller creates later is matched against.
type backedUpPod struct {
	Namespace, Name string
	// Owner is the pod's controller in the backup (Kind and APIVersion of the object, Name); nil if none.
	Owner *metav1.OwnerReference
	// Snapshots maps volume name to snapshot ID.
	Snapshots map[string]string
}

// backedUpPods lists the backup's pods with at least one usable volume snapshot, by namespace, each sorted
// by name. Finished pods are left out, as the restore leaves them out.
func backedUpPods(sb *storedBackup) (map[string][]backedUpPod, error) {
	snaps := backedUpVolumes(sb.PodVolumeBackups)
	out := map[string][]backedUpPod{}
	for _, en := range sb.Entries {
		if res, _, _ := strings.Cut(en.Name, "/"); res != "pods" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := json.Unmarshal(en.Data, &obj.Object); err != nil {
			return nil, fmt.Errorf("archived object %s is unreadable: %w", en.Name, err)
		}
		s := snaps[obj.GetNamespace()+"/"+obj.GetName()]
		if len(s) == 0 || finishedPod("pods", obj) != "" {
			continue
		}
		bp := backedUpPod{Namespace: obj.GetNamespace(), Name: obj.GetName(), Snapshots: s}
		for _, ref := range obj.GetOwnerReferences() {
			if ref.Controller != nil && *ref.Controller {
				bp.Owner = &ref
			}
		}
		out[bp.Namespace] = append(out[bp.Namespace], bp)
	}
	for _, pods := range out {
		slices.SortFunc(pods, func(a, b backedUpPod) int { return strings.Compare(a.Name, b.Name) })
	}
	return out, nil
}

// sourceNamespaces are the backup namespaces a restore with spec restores into target, sorted.
func sourceNamespaces(spec v1.RestoreSpec, target string, backedUp map[string][]backedUpPod) []string {
	var out []string
	for source := range backedUp {
		to := source
		if m := spec.NamespaceMapping[source]; m != "" {
			to = m
		}
		if to == target && NamespaceSelected(spec.IncludedNamespaces, spec.ExcludedNamespaces, source) {
			out = append(out, source)
		}
	}
	slices.Sort(out)
	return out
}

// sameOwner reports whether two owner references name the same object by group, kind and name (the UID
// changed with the restore).
func sameOwner(a, b *metav1.OwnerReference) bool {
	if a == nil || b == nil {
		return false
	}
	ga, _ := schema.ParseGroupVersion(a.APIVersion)
	gb, _ := schema.ParseGroupVersion(b.APIVersion)
	return ga.Group == gb.Group && a.Kind == b.Kind && a.Name == b.Name
}

// podMatch is what a new pod of a restored controller stands for in the backup.
type podMatch struct {
	// Pod is the backed-up pod it replaces; nil if none, and Reason says why.
	Pod    *backedUpPod
	Reason string
}

// matchBackedUpPod finds the backed-up pod a new pod replaces, among the pods of sources (the backup
// namespaces restored into the pod's namespace): for a StatefulSet's pod the pod of the same StatefulSet and
// ordinal; for any other controller its only backed-up pod whose volumes no live pod of the restore claims
// (claimed holds volumeKeys). A pod that cannot be told exactly gets no match, never a guess.
func matchBackedUpPod(backedUp map[string][]backedUpPod, sources []string, podName string, owner *metav1.OwnerReference, claimed map[string]bool) podMatch {
	gv, _ := schema.ParseGroupVersion(owner.APIVersion)
	what := fmt.Sprintf("%s %s", owner.Kind, owner.Name)
	var candidates []*backedUpPod
	for _, source := range sources {
		for i := range backedUp[source] {
			if bp := &backedUp[source][i]; sameOwner(bp.Owner, owner) {
				candidates = append(candidates, bp)
			}
		}
	}
	if len(candidates) == 0 {
		return podMatch{Reason: fmt.Sprintf("the backup has no pod of %s with backed-up volumes", what)}
	}
	if gv.Group == "apps" && owner.Kind == "StatefulSet" {
		ordinal, ok := strings.CutPrefix(podName, owner.Name+"-")
		if _, err := strconv.Atoi(ordinal); !ok || err != nil {
			return podMatch{Reason: fmt.Sprintf("pod name %s is not %s-<ordinal>", podName, owner.Name)}
		}
		var same []*backedUpPod
		for _, bp := range candidates {
			if bp.Name == podName {
				same = append(same, bp)
			}
		}
		if len(same) != 1 {
			return podMatch{Reason: fmt.Sprintf("%d backed-up pods of %s have ordinal %s", len(same), what, ordinal)}
		}
		return podMatch{Pod: same[0]}
	}
	var free []*backedUpPod
	for _, bp := range candidates {
		if !slices.ContainsFunc(slices.Collect(maps.Values(bp.Snapshots)), func(id string) bool { return claimed[volumeKey(bp.Namespace, id)] }) {
			free = append(free, bp)
		}
	}
	switch len(free) {
	case 1:
		return podMatch{Pod: free[0]}
	case 0:
		return podMatch{Reason: fmt.Sprintf("every backed-up pod of %s already has a pod of the restore standing for it", what)}
	}
	names := make([]string, len(free))
	for i, bp := range free {
		names[i] = bp.Name
	}
	return podMatch{Reason: fmt.Sprintf("%d backed-up pods of %s have no pod standing for them (%s): which one this pod replaces cannot be told",
		len(free), what, strings.Join(names, ", "))}
}
