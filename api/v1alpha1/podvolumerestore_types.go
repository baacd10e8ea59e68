package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodVolumeRestoreSpec is one snapshot for one node-agent to write into a restored pod's volume.
type PodVolumeRestoreSpec struct {
	// +kubebuilder:validation:MinLength=1
	Node string       `json:"node"`
	Pod  PodReference `json:"pod"`
	// +kubebuilder:validation:MinLength=1
	Volume string `json:"volume"`
	// +kubebuilder:validation:MinLength=1
	StorageLocation string `json:"storageLocation"`
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	SnapshotID string `json:"snapshotID"`
	// SourceNamespace is the namespace the snapshot's repository belongs to.
	SourceNamespace string `json:"sourceNamespace,omitempty"`
}

// PodVolumeRestoreStatus is what the node-agent has done.
type PodVolumeRestoreStatus struct {
	Phase               VolumePhase  `json:"phase,omitempty"`
	Progress            Progress     `json:"progress,omitempty"`
	Message             string       `json:"message,omitempty"`
	StartTimestamp      *metav1.Time `json:"startTimestamp,omitempty"`
	CompletionTimestamp *metav1.Time `json:"completionTimestamp,omitempty"`
}

// PodVolumeRestore is the restore of one pod volume by the node-agent of the pod's node.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pvr
// +kubebuilder:selectablefield:JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.spec.pod.name`
// +kubebuilder:printcolumn:name="Volume",type=string,JSONPath=`.spec.volume`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Bytes done",type=integer,JSONPath=`.status.progress.bytesDone`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodVolumeRestore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PodVolumeRestoreSpec   `json:"spec"`
	Status            PodVolumeRestoreStatus `json:"status,omitempty"`
}

// PodVolumeRestoreList is a list of PodVolumeRestores.
// +kubebuilder:object:root=true
type PodVolumeRestoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodVolumeRestore `json:"items"`
}
