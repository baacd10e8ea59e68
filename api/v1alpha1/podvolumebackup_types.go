package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodVolumeBackupSpec is one pod volume for one node-agent to back up.
type PodVolumeBackupSpec struct {
	// Node is the node the pod runs on; only that node's agent takes the work.
	// +kubebuilder:validation:MinLength=1
	Node string       `json:"node"`
	Pod  PodReference `json:"pod"`
	// +kubebuilder:validation:MinLength=1
	Volume string `json:"volume"`
	// PVC names the claim behind the volume, if any; parents are chosen per claim.
	PVC string `json:"pvc,omitempty"`
	// +kubebuilder:validation:MinLength=1
	StorageLocation string `json:"storageLocation"`
	// ParentSnapshotID is the snapshot unchanged files are taken from.
	ParentSnapshotID string            `json:"parentSnapshotID,omitempty"`
	Tags             map[string]string `json:"tags,omitempty"`
	// ExcludePatterns are globs, relative to the volume root, of files not to back up.
	ExcludePatterns []string `json:"excludePatterns,omitempty"`
}

// VolumeStats counts what a volume's backup did.
type VolumeStats struct {
	FilesNew        int64 `json:"filesNew,omitempty"`
	FilesChanged    int64 `json:"filesChanged,omitempty"`
	FilesUnmodified int64 `json:"filesUnmodified,omitempty"`
	BytesRead       int64 `json:"bytesRead,omitempty"`
	BytesAdded      int64 `json:"bytesAdded,omitempty"`
	BytesStored     int64 `json:"bytesStored,omitempty"`
}

// PodVolumeBackupStatus is what the node-agent has done.
type PodVolumeBackupStatus struct {
	Phase               VolumePhase  `json:"phase,omitempty"`
	Progress            Progress     `json:"progress,omitempty"`
	SnapshotID          string       `json:"snapshotID,omitempty"`
	Stats               VolumeStats  `json:"stats,omitempty"`
	Message             string       `json:"message,omitempty"`
	Warnings            []string     `json:"warnings,omitempty"`
	StartTimestamp      *metav1.Time `json:"startTimestamp,omitempty"`
	CompletionTimestamp *metav1.Time `json:"completionTimestamp,omitempty"`
}

// PodVolumeBackup is the backup of one pod volume by the node-agent of the pod's node.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pvb
// +kubebuilder:selectablefield:JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.spec.pod.name`
// +kubebuilder:printcolumn:name="Volume",type=string,JSONPath=`.spec.volume`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Bytes done",type=integer,JSONPath=`.status.progress.bytesDone`
// +kubebuilder:printcolumn:name="Bytes total",type=integer,JSONPath=`.status.progress.bytesTotal`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodVolumeBackup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PodVolumeBackupSpec   `json:"spec"`
	Status            PodVolumeBackupStatus `json:"status,omitempty"`
}

// PodVolumeBackupList is a list of PodVolumeBackups.
// +kubebuilder:object:root=true
type PodVolumeBackupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodVolumeBackup `json:"items"`
}
