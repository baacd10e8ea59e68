package v1alpha1

// Phase is where a Backup or Restore is in its life.
// +kubebuilder:validation:Enum=New;InProgress;Completed;PartiallyFailed;Failed;Deleting
type Phase string

// Phases of Backups and Restores.
const (
	PhaseNew             Phase = "New"
	PhaseInProgress      Phase = "InProgress"
	PhaseCompleted       Phase = "Completed"
	PhasePartiallyFailed Phase = "PartiallyFailed"
	PhaseFailed          Phase = "Failed"
	PhaseDeleting        Phase = "Deleting"
)

// VolumePhase is where a PodVolumeBackup or PodVolumeRestore is in its life.
// +kubebuilder:validation:Enum=New;InProgress;Completed;Failed;Canceled
type VolumePhase string

// Phases of PodVolumeBackups and PodVolumeRestores.
const (
	VolumePhaseNew        VolumePhase = "New"
	VolumePhaseInProgress VolumePhase = "InProgress"
	VolumePhaseCompleted  VolumePhase = "Completed"
	VolumePhaseFailed     VolumePhase = "Failed"
	VolumePhaseCanceled   VolumePhase = "Canceled"
)

// Progress counts work done of the work known so far; totals may grow while a scan runs.
type Progress struct {
	BytesDone  int64 `json:"bytesDone,omitempty"`
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	FilesDone  int64 `json:"filesDone,omitempty"`
	FilesTotal int64 `json:"filesTotal,omitempty"`
}

// PodReference names the pod a volume belongs to.
type PodReference struct {
	// +kubebuilder:validation:MinLength=1
	Namespace string `json:"namespace"`
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	UID  string `json:"uid,omitempty"`
}

// NodeLabel labels PodVolumeBackups and PodVolumeRestores with their node, so a node-agent's cache can hold
// only its own node's work (spec.node is also a selectable field).
const NodeLabel = "straddle.io/node"

// BackupLabel labels a backup's PodVolumeBackups with the Backup's name (and a restore's PodVolumeRestores
// with the Restore's), so its volumes are listed without walking owner references.
const BackupLabel = "straddle.io/backup"

// RestoreLabel labels a restore's PodVolumeRestores with the Restore's name.
const RestoreLabel = "straddle.io/restore"

// ScheduleLabel labels the Backups a Schedule created with the Schedule's name; retention and the
// no-overlap rule find a schedule's Backups by it.
const ScheduleLabel = "straddle.io/schedule"

// SyncedFromAnnotation marks a Backup the controller created from a storage location's backups/ folder (value:
// the location's name) rather than from a user's request: the Backup reconciler never runs such a backup, and
// the sync removes it when its folder disappears from storage.
const SyncedFromAnnotation = "straddle.io/synced-from"
