package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ScheduleSpec makes Backups from a template on a cron schedule.
type ScheduleSpec struct {
	// Schedule is a five-field cron expression (minute hour day-of-month month day-of-week), a descriptor
	// such as @daily, or @every followed by a Go duration.
	// +kubebuilder:validation:Pattern=`^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every ([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|[0-9*?,/-]+ [0-9*?,/-]+ [0-9*?,/LW-]+ [0-9A-Za-z*?,/-]+ [0-9A-Za-z*?,/#L-]+)$`
	Schedule string `json:"schedule"`
	// Template is the spec of every Backup the schedule creates.
	Template BackupSpec `json:"template,omitempty"`
	// Paused stops new runs; running ones finish.
	Paused bool `json:"paused,omitempty"`
}

// ScheduleStatus records the schedule's runs.
type ScheduleStatus struct {
	LastBackup     string             `json:"lastBackup,omitempty"`
	LastBackupTime *metav1.Time       `json:"lastBackupTime,omitempty"`
	NextRunTime    *metav1.Time       `json:"nextRunTime,omitempty"`
	SkippedRuns    int                `json:"skippedRuns,omitempty"`
	Conditions     []metav1.Condition `json:"conditions,omitempty"`
}

// Schedule runs backups periodically.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Paused",type=boolean,JSONPath=`.spec.paused`
// +kubebuilder:printcolumn:name="Last backup",type=date,JSONPath=`.status.lastBackupTime`
// +kubebuilder:printcolumn:name="Next run",type=date,JSONPath=`.status.nextRunTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Schedule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ScheduleSpec   `json:"spec"`
	Status            ScheduleStatus `json:"status,omitempty"`
}

// ScheduleList is a list of Schedules.
// +kubebuilder:object:root=true
type ScheduleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Schedule `json:"items"`
}
