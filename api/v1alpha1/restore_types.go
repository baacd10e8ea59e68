package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RestoreSpec says which backup to restore and where.
type RestoreSpec struct {
	// +kubebuilder:validation:MinLength=1
	BackupName         string   `json:"backupName"`
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// NamespaceMapping restores a backed-up namespace (key) into another (value).
	NamespaceMapping map[string]string `json:"namespaceMapping,omitempty"`
	// Timeout bounds the restore, counted from its start (status.startTimestamp), as a Go duration such as
	// 4h; unset means the install's default. Volumes not restored by then fail with "timed out after …";
	// those restored stay, and the restore ends PartiallyFailed.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// Hooks add init containers to restored pods, after restore-wait: they see the volumes' data restored.
	Hooks RestoreHooks `json:"hooks,omitempty,omitzero"`
}

// RestoreHooks are the hooks a restore adds to the pods it restores.
type RestoreHooks struct {
	InitContainers []RestoreInitHook `json:"initContainers,omitempty"`
}

// RestoreInitHook is an init container added to the restored pods it selects, after restore-wait, in order.
type RestoreInitHook struct {
	// Name is the init container's name.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`
	// +kubebuilder:validation:MinItems=1
	Command []string `json:"command"`
	// Namespaces are the restored (target) namespaces whose pods get the hook; empty means all.
	Namespaces []string `json:"namespaces,omitempty"`
	// LabelSelector restricts the hook to matching pods.
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
}

// SkippedResource is a backed-up object the restore did not create, and why (it already exists, say).
type SkippedResource struct {
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Reason    string `json:"reason"`
}

// RestoreStatus is what a restore has done so far.
type RestoreStatus struct {
	Phase            Phase    `json:"phase,omitempty"`
	Progress         Progress `json:"progress,omitempty"`
	VolumesTotal     int      `json:"volumesTotal,omitempty"`
	VolumesCompleted int      `json:"volumesCompleted,omitempty"`
	VolumesFailed    int      `json:"volumesFailed,omitempty"`
	// Resources counts the objects the restore created; SkippedResources lists those it did not, with why.
	Resources           []ResourceCount    `json:"resources,omitempty"`
	SkippedResources    []SkippedResource  `json:"skippedResources,omitempty"`
	Errors              []string           `json:"errors,omitempty"`
	Warnings            []string           `json:"warnings,omitempty"`
	StartTimestamp      *metav1.Time       `json:"startTimestamp,omitempty"`
	CompletionTimestamp *metav1.Time       `json:"completionTimestamp,omitempty"`
	Conditions          []metav1.Condition `json:"conditions,omitempty"`
}

// Restore brings a backup's resources and volume data back.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Backup",type=string,JSONPath=`.spec.backupName`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Volumes",type=integer,JSONPath=`.status.volumesTotal`
// +kubebuilder:printcolumn:name="Done",type=integer,JSONPath=`.status.volumesCompleted`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Restore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RestoreSpec   `json:"spec"`
	Status            RestoreStatus `json:"status,omitempty"`
}

// RestoreList is a list of Restores.
// +kubebuilder:object:root=true
type RestoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Restore `json:"items"`
}
