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
	// Timeout bounds the backup, counted from its start (status.startTimestamp), as a Go duration such as 4h;
	// unset means the install's default. Volumes not finished by then fail with "timed out after …"; those
	// that finished stay recorded and restorable, and the backup ends PartiallyFailed.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// Hooks run commands in the selected pods around their volumes' backup, as Velero's BackupSpec.Hooks.
	// A pod with hook annotations runs those instead of any of these.
	Hooks BackupHooks `json:"hooks,omitempty,omitzero"`
}

// BackupHooks are the exec hooks a backup runs in its pods.
type BackupHooks struct {
	Resources []BackupResourceHookSpec `json:"resources,omitempty"`
}

// BackupResourceHookSpec runs its hooks in the pods it selects: by namespace and label.
type BackupResourceHookSpec struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// IncludedNamespaces select pods' namespaces; "*" or empty means all.
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// LabelSelector restricts the hooks to matching pods.
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
	// Pre hooks run, in order, before the pod's volumes are backed up.
	Pre []BackupResourceHook `json:"pre,omitempty"`
	// Post hooks run, in order, after every volume of the pod ended, whatever the result.
	Post []BackupResourceHook `json:"post,omitempty"`
}

// BackupResourceHook is one hook.
type BackupResourceHook struct {
	Exec *ExecHook `json:"exec"`
}

// HookErrorMode says what a failing hook does to the backup of its pod.
// +kubebuilder:validation:Enum=Fail;Continue
type HookErrorMode string

// Hook error modes.
const (
	// HookErrorFail fails the pod's volumes when a pre hook fails.
	HookErrorFail HookErrorMode = "Fail"
	// HookErrorContinue backs the pod's volumes up anyway, with a warning.
	HookErrorContinue HookErrorMode = "Continue"
)

// ExecHook is a command run in a container of the pod through the API server's pods/exec.
type ExecHook struct {
	// Container is the container to run in; empty means the pod's first container.
	Container string `json:"container,omitempty"`
	// +kubebuilder:validation:MinItems=1
	Command []string `json:"command"`
	// Timeout kills the command after this long; default 30s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// OnError is Fail (default) or Continue.
	OnError HookErrorMode `json:"onError,omitempty"`
}

// HookPhase says when a hook runs: before (pre) or after (post) the pod's volumes are backed up.
type HookPhase string

// Hook phases.
const (
	HookPhasePre  HookPhase = "pre"
	HookPhasePost HookPhase = "post"
)

// HookState is how far a hook got.
type HookState string

// Hook states. Running is recorded before the command starts, so a restarted controller never runs it twice.
const (
	HookRunning   HookState = "Running"
	HookSucceeded HookState = "Succeeded"
	HookFailed    HookState = "Failed"
)

// HookResult is the outcome of one hook in one pod.
type HookResult struct {
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	PodUID    string    `json:"podUID"`
	Phase     HookPhase `json:"phase"`
	// Index is the hook's place among the pod's hooks of its phase.
	Index     int           `json:"index"`
	Container string        `json:"container"`
	Command   []string      `json:"command"`
	OnError   HookErrorMode `json:"onError"`
	State     HookState     `json:"state"`
	ExitCode  *int          `json:"exitCode,omitempty"`
	// Stdout and Stderr are the output's last KiB.
	Stdout   string           `json:"stdout,omitempty"`
	Stderr   string           `json:"stderr,omitempty"`
	Duration *metav1.Duration `json:"duration,omitempty"`
	Error    string           `json:"error,omitempty"`
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
	Resources []ResourceCount `json:"resources,omitempty"`
	Errors    []string        `json:"errors,omitempty"`
	Warnings  []string        `json:"warnings,omitempty"`
	// Hooks are the outcomes of the exec hooks run in the backup's pods, in the order they started.
	Hooks               []HookResult       `json:"hooks,omitempty"`
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
