package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupRepositorySpec names the repository of one namespace's volumes in one storage location, and how often
// it is maintained.
type BackupRepositorySpec struct {
	// +kubebuilder:validation:MinLength=1
	StorageLocation string `json:"storageLocation"`
	// +kubebuilder:validation:MinLength=1
	VolumeNamespace string `json:"volumeNamespace"`
	// MaintenanceFrequency is how often prune runs, as a Go duration, counted from the last successful prune
	// (or from the repository's creation).
	// +kubebuilder:default="24h0m0s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	MaintenanceFrequency *metav1.Duration `json:"maintenanceFrequency,omitempty"`
	// CheckFrequency is how often `check --read-data-subset` runs, as a Go duration, counted from the last
	// check (or from the repository's creation).
	// +kubebuilder:default="168h0m0s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	CheckFrequency *metav1.Duration `json:"checkFrequency,omitempty"`
	// CheckReadDataPercent is the share of the packs a check downloads and verifies, in percent.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	CheckReadDataPercent *int32 `json:"checkReadDataPercent,omitempty"`
}

// RepositoryPhase says whether a repository can be used.
// +kubebuilder:validation:Enum=New;Ready;NotReady
type RepositoryPhase string

// MaintenanceKind is the kind of a maintenance run.
// +kubebuilder:validation:Enum=Prune;Check
type MaintenanceKind string

// Maintenance kinds.
const (
	// MaintenancePrune deletes data no snapshot uses (repo/prune).
	MaintenancePrune MaintenanceKind = "Prune"
	// MaintenanceCheck verifies the repository and reads a subset of its data (repo/check).
	MaintenanceCheck MaintenanceKind = "Check"
)

// MaintenanceRun is a maintenance run the controller requested, and, once a node-agent claimed it, who runs it.
// The controller sets it with an empty node; a node-agent claims it by writing its node with the
// resourceVersion it read (a conflict means another agent won), heartbeats while it runs, and clears it when
// it records the result. The controller requests it again when the heartbeat goes stale.
type MaintenanceRun struct {
	// ID names this request; a request made again gets a new one, so an agent that lost its claim can tell.
	ID   string          `json:"id"`
	Kind MaintenanceKind `json:"kind"`
	// RequestedTime is when the controller requested the run.
	RequestedTime metav1.Time `json:"requestedTime"`
	// Node is the node of the node-agent that claimed the run; empty until one did.
	Node string `json:"node,omitempty"`
	// StartTime is when the node-agent claimed and started the run.
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// HeartbeatTime is when the node-agent last said it still runs it.
	HeartbeatTime *metav1.Time `json:"heartbeatTime,omitempty"`
}

// PruneResult is what the last prune did, successful or not.
type PruneResult struct {
	// Time is when the prune ended.
	Time metav1.Time `json:"time"`
	// Node ran the prune.
	Node          string           `json:"node,omitempty"`
	Duration      *metav1.Duration `json:"duration,omitempty"`
	BytesFreed    int64            `json:"bytesFreed"`
	PacksDeleted  int64            `json:"packsDeleted"`
	PacksRepacked int64            `json:"packsRepacked"`
	Snapshots     int64            `json:"snapshots"`
	// Postponed says running backups held the repository for longer than the prune may wait; it deleted
	// nothing and runs again soon.
	Postponed bool `json:"postponed,omitempty"`
	// Error says why the prune failed; empty when it succeeded.
	Error string `json:"error,omitempty"`
}

// CheckResult is what the last check found.
type CheckResult struct {
	// Time is when the check ended.
	Time metav1.Time `json:"time"`
	// Node ran the check.
	Node     string           `json:"node,omitempty"`
	Duration *metav1.Duration `json:"duration,omitempty"`
	// OK says the check ran to its end and found no errors.
	OK bool `json:"ok"`
	// ErrorCount is how many problems the check found; Errors lists the first of them.
	ErrorCount int64    `json:"errorCount,omitempty"`
	Errors     []string `json:"errors,omitempty"`
	// ReadDataPercent is the share of packs it was asked to read.
	ReadDataPercent int32 `json:"readDataPercent,omitempty"`
	PacksRead       int64 `json:"packsRead"`
	BytesRead       int64 `json:"bytesRead"`
	// Error says why the check could not run to its end (storage unreachable, ...); empty when it did.
	Error string `json:"error,omitempty"`
}

// BackupRepositoryStatus records the repository's state and maintenance.
type BackupRepositoryStatus struct {
	Phase   RepositoryPhase `json:"phase,omitempty"`
	Message string          `json:"message,omitempty"`
	// LastMaintenanceTime is when the last successful prune ended.
	LastMaintenanceTime *metav1.Time `json:"lastMaintenanceTime,omitempty"`
	// Maintenance is the run requested or running now, if any.
	Maintenance *MaintenanceRun `json:"maintenance,omitempty"`
	LastPrune   *PruneResult    `json:"lastPrune,omitempty"`
	LastCheck   *CheckResult    `json:"lastCheck,omitempty"`
	// Conditions: Pruned (the last prune succeeded) and Checked (the last check ran and found no errors).
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Condition types of a BackupRepository.
const (
	// ConditionPruned is True when the last prune succeeded.
	ConditionPruned = "Pruned"
	// ConditionChecked is True when the last check ran to its end and found no errors.
	ConditionChecked = "Checked"
)

// BackupRepository is the encrypted repository of one (storage location, namespace).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Location",type=string,JSONPath=`.spec.storageLocation`
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.spec.volumeNamespace`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Last maintenance",type=date,JSONPath=`.status.lastMaintenanceTime`
// +kubebuilder:printcolumn:name="Freed",type=integer,JSONPath=`.status.lastPrune.bytesFreed`,priority=1
// +kubebuilder:printcolumn:name="Check OK",type=boolean,JSONPath=`.status.lastCheck.ok`
// +kubebuilder:printcolumn:name="Running",type=string,JSONPath=`.status.maintenance.kind`
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
