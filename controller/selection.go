package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// Pod annotations that choose volumes and files (contract, DESIGN §6). Velero's are honoured so a cluster
// moves over without re-annotating.
const (
	AnnotationBackupVolumes         = "backup.straddle.io/backup-volumes"
	AnnotationBackupVolumesExcludes = "backup.straddle.io/backup-volumes-excludes"
	AnnotationExcludePatterns       = "backup.straddle.io/exclude-patterns"

	VeleroAnnotationBackupVolumes         = "backup.velero.io/backup-volumes"
	VeleroAnnotationBackupVolumesExcludes = "backup.velero.io/backup-volumes-excludes"
)

// PlannedVolume is one pod volume a backup takes: one PodVolumeBackup.
type PlannedVolume struct {
	Namespace, Pod, PodUID, Node string
	Volume                       string
	// PVC is the claim behind the volume, or "".
	PVC             string
	ExcludePatterns []string
}

// Selection is what a backup takes from a set of pods, and what it leaves and why.
type Selection struct {
	Volumes  []PlannedVolume
	Skipped  []v1.SkippedVolume
	Warnings []string
}

// VolumeDefaults say which volumes a backup takes from a pod its annotations say nothing about.
type VolumeDefaults struct {
	// All takes every volume not excluded; otherwise only the volumes the backup-volumes annotations name.
	All bool
	// Excluded are volume names All leaves out unless the pod's backup-volumes annotation names them: the
	// install's --default-excluded-volumes (service-mesh sidecars' volumes, say), so no pod needs an excludes
	// annotation for them.
	Excluded []string
}

// SelectVolumes chooses the volumes of pods to back up. pvcs holds the claims of the pods' namespaces by
// "namespace/name", so block-mode claims are skipped; a claim not in it is taken (its node-agent then
// reports what is wrong). Pods are taken in the order given, volumes in pod spec order.
func SelectVolumes(pods []corev1.Pod, pvcs map[string]*corev1.PersistentVolumeClaim, defaults VolumeDefaults) Selection {
	var sel Selection
	for i := range pods {
		selectPodVolumes(&sel, &pods[i], pvcs, defaults)
	}
	return sel
}

func selectPodVolumes(sel *Selection, pod *corev1.Pod, pvcs map[string]*corev1.PersistentVolumeClaim, defaults VolumeDefaults) {
	defaultAll := defaults.All
	include := annotationList(pod, AnnotationBackupVolumes, VeleroAnnotationBackupVolumes)
	exclude := annotationList(pod, AnnotationBackupVolumesExcludes, VeleroAnnotationBackupVolumesExcludes)
	has := map[string]bool{}
	for _, vol := range pod.Spec.Volumes {
		has[vol.Name] = true
	}
	for _, name := range append(slices.Clone(include), exclude...) {
		if !has[name] {
			sel.Warnings = append(sel.Warnings, fmt.Sprintf("pod %s/%s has no volume %q named in its annotations", pod.Namespace, pod.Name, name))
		}
	}
	var chosen []corev1.Volume
	for _, vol := range pod.Spec.Volumes {
		excluded := slices.Contains(exclude, vol.Name) || slices.Contains(defaults.Excluded, vol.Name) && !slices.Contains(include, vol.Name)
		if defaultAll && !excluded || !defaultAll && slices.Contains(include, vol.Name) {
			chosen = append(chosen, vol)
		}
	}
	if len(chosen) == 0 {
		return
	}
	// Only pods that would have given volumes are reported as not Running: listing every finished Job pod
	// of a cluster would drown the skips that matter.
	if pod.Status.Phase != corev1.PodRunning {
		phase := pod.Status.Phase
		if phase == "" {
			phase = "not yet scheduled"
		}
		sel.Skipped = append(sel.Skipped, v1.SkippedVolume{Namespace: pod.Namespace, Pod: pod.Name,
			Reason: fmt.Sprintf("pod is %s, not Running: its volumes are not mounted on a node", phase)})
		return
	}
	patterns := splitList(pod.Annotations[AnnotationExcludePatterns])
	for _, vol := range chosen {
		if reason := neverBackedUp(pod.Namespace, vol, pvcs); reason != "" {
			sel.Skipped = append(sel.Skipped, v1.SkippedVolume{Namespace: pod.Namespace, Pod: pod.Name, Volume: vol.Name, Reason: reason})
			continue
		}
		pv := PlannedVolume{Namespace: pod.Namespace, Pod: pod.Name, PodUID: string(pod.UID), Node: pod.Spec.NodeName,
			Volume: vol.Name, ExcludePatterns: patterns}
		if vol.PersistentVolumeClaim != nil {
			pv.PVC = vol.PersistentVolumeClaim.ClaimName
		}
		sel.Volumes = append(sel.Volumes, pv)
	}
}

// neverBackedUp says why a volume is never backed up (DESIGN §6), or "" if it can be. Their contents come
// from the API server or the host, which a restore recreates from the resources or cannot own.
func neverBackedUp(namespace string, vol corev1.Volume, pvcs map[string]*corev1.PersistentVolumeClaim) string {
	switch {
	case vol.HostPath != nil:
		return "hostPath volume: the host's files are not the pod's to back up"
	case vol.Secret != nil:
		return "secret volume: the Secret is backed up with the resources"
	case vol.ConfigMap != nil:
		return "configMap volume: the ConfigMap is backed up with the resources"
	case vol.Projected != nil:
		return "projected volume: its sources are recreated by the API server"
	case vol.DownwardAPI != nil:
		return "downwardAPI volume: its files are recreated from the pod"
	case vol.PersistentVolumeClaim != nil:
		pvc := pvcs[namespace+"/"+vol.PersistentVolumeClaim.ClaimName]
		if pvc != nil && pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock {
			return fmt.Sprintf("claim %s is volumeMode Block: a raw device has no files to back up", pvc.Name)
		}
	}
	return ""
}

// annotationList reads comma-separated names from either annotation, in order and without duplicates.
func annotationList(pod *corev1.Pod, keys ...string) []string {
	var out []string
	for _, k := range keys {
		for _, name := range splitList(pod.Annotations[k]) {
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// NamespaceSelected reports whether a backup with these included and excluded namespaces takes ns; an empty
// include list or "*" takes every namespace.
func NamespaceSelected(included, excluded []string, ns string) bool {
	if slices.Contains(excluded, ns) {
		return false
	}
	return len(included) == 0 || slices.Contains(included, "*") || slices.Contains(included, ns)
}

// maxNameLength keeps names usable as label values, which are at most 63 characters.
const maxNameLength = 63

// PodVolumeBackupName is the name of the PodVolumeBackup of one pod volume in a backup: the same on every
// reconcile (so a restarted controller finds what it created) and a valid name of at most 63 characters.
func PodVolumeBackupName(backup, podUID, volume string) string {
	sum := sha256.Sum256([]byte(podUID + "/" + volume))
	suffix := hex.EncodeToString(sum[:])[:10]
	prefix := backup
	if len(prefix) > maxNameLength-len(suffix)-1 {
		prefix = strings.TrimRight(prefix[:maxNameLength-len(suffix)-1], "-.")
	}
	return prefix + "-" + suffix
}
