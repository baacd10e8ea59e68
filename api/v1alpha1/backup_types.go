package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupSpec selects the pods whose volumes are backed up.
type BackupSpec struct {
	// IncludedNamespaces are backed up; "*" or empty means all.
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// LabelSelector restricts the backup to matching pods.
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
	// TTL is how long the backup is kept, as a Go duration such as 720h.
	// +kubebuilder:default="720h0m0s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	TTL *metav1.Duration `json:"ttl,omitempty"`
	// DefaultVolumesToFsBackup backs up every volume not excluded by annotation; unset means the install's
	// default.
	DefaultVolumesToFsBackup *bool `json:"defaultVolumesToFsBackup,omitempty"`
	// StorageLocation names a BackupStorageLocation; empty means the default one.
	StorageLocation string `json:"storageLocation,omitempty"`
}

// SkippedVolume is a volume the backup did not take, and why: nothing is skipped silently.
type SkippedVolume struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Volume    string `json:"volume,omitempty"`
	Reason    string `json:"reason"`
}

// ResourceCount is how many objects of one resource a backup wrote.
type ResourceCount struct {
	// Resource is the resource's plural name and group, as kubectl prints it: "deployments.apps", "pods".
	Resource string `json:"resource"`
	Count    int    `json:"count"`
}

// BackupStatus is what a backup has done so far.
type BackupStatus struct {
	Phase Phase `json:"phase,omitempty"`
	// Progress sums the progress of the backup's PodVolumeBackups.
	Progress         Progress        `json:"progress,omitempty"`
	VolumesTotal     int             `json:"volumesTotal,omitempty"`
	VolumesCompleted int             `json:"volumesCompleted,omitempty"`
	VolumesFailed    int             `json:"volumesFailed,omitempty"`
	SkippedVolumes   []SkippedVolume `json:"skippedVolumes,omitempty"`
	// Resources counts the namespaced objects written to the storage location with the backup.
	Resources           []ResourceCount    `json:"resources,omitempty"`
	Errors              []string           `json:"errors,omitempty"`
	Warnings            []string           `json:"warnings,omitempty"`
	Expiration          *metav1.Time       `json:"expiration,omitempty"`
	StartTimestamp      *metav1.Time       `json:"startTimestamp,omitempty"`
	CompletionTimestamp *metav1.Time       `json:"completionTimestamp,omitempty"`
	Conditions          []metav1.Condition `json:"conditions,omitempty"`
}

// Backup is one backup of the selected pods' volumes.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Volumes",type=integer,JSONPath=`.status.volumesTotal`
// +kubebuilder:printcolumn:name="Done",type=integer,JSONPath=`.status.volumesCompleted`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.volumesFailed`
// +kubebuilder:printcolumn:name="Bytes",type=integer,JSONPath=`.status.progress.bytesDone`
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.status.expiration`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Backup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              BackupSpec   `json:"spec,omitempty"`
	Status            BackupStatus `json:"status,omitempty"`
}

// BackupList is a list of Backups.
// +kubebuilder:object:root=true
type BackupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Backup `json:"items"`
}
