package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupRepositorySpec names the repository of one namespace's volumes in one storage location.
type BackupRepositorySpec struct {
	// +kubebuilder:validation:MinLength=1
	StorageLocation string `json:"storageLocation"`
	// +kubebuilder:validation:MinLength=1
	VolumeNamespace string `json:"volumeNamespace"`
	// MaintenanceFrequency is how often prune runs, as a Go duration.
	// +kubebuilder:default="24h0m0s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	MaintenanceFrequency *metav1.Duration `json:"maintenanceFrequency,omitempty"`
}

// RepositoryPhase says whether a repository can be used.
// +kubebuilder:validation:Enum=New;Ready;NotReady
type RepositoryPhase string

// BackupRepositoryStatus records the repository's state and maintenance.
type BackupRepositoryStatus struct {
	Phase               RepositoryPhase    `json:"phase,omitempty"`
	Message             string             `json:"message,omitempty"`
	LastMaintenanceTime *metav1.Time       `json:"lastMaintenanceTime,omitempty"`
	Conditions          []metav1.Condition `json:"conditions,omitempty"`
}

// BackupRepository is the encrypted repository of one (storage location, namespace).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Location",type=string,JSONPath=`.spec.storageLocation`
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.spec.volumeNamespace`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Last maintenance",type=date,JSONPath=`.status.lastMaintenanceTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BackupRepository struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              BackupRepositorySpec   `json:"spec"`
	Status            BackupRepositoryStatus `json:"status,omitempty"`
}

// BackupRepositoryList is a list of BackupRepositories.
// +kubebuilder:object:root=true
type BackupRepositoryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupRepository `json:"items"`
}
