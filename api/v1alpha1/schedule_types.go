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
	// Retention, when set, decides which of the schedule's Backups to keep; the others are deleted once
	// they ended. Every Backup's TTL applies too.
	// +optional
	Retention *RetentionPolicy `json:"retention,omitempty"`
}

// RetentionPolicy keeps a schedule's Backups as restic's forget does: keepLast keeps the N newest; each of
// the others keeps the newest Backup of each of the N most recent hours, days, ISO weeks or months (UTC)
// that have one. A Backup kept by any rule is kept; zero turns a rule off. Backups are ordered by their
// start time; Failed Backups are never kept, only left until a newer kept one exists.
type RetentionPolicy struct {
	// +kubebuilder:validation:Minimum=0
	// +optional
	KeepLast int `json:"keepLast,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	KeepHourly int `json:"keepHourly,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	KeepDaily int `json:"keepDaily,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	KeepWeekly int `json:"keepWeekly,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	KeepMonthly int `json:"keepMonthly,omitempty"`
}

// ScheduleStatus records the schedule's runs.
type ScheduleStatus struct {
	// LastBackup is the name of the Backup the schedule created last.
	LastBackup string `json:"lastBackup,omitempty"`
	// LastBackupTime is the tick LastBackup was created for.
	LastBackupTime *metav1.Time `json:"lastBackupTime,omitempty"`
	// NextRunTime is the next tick; empty while paused or while the expression is invalid.
	NextRunTime *metav1.Time `json:"nextRunTime,omitempty"`
	// SkippedRuns counts ticks at which no Backup was created because one of the schedule's Backups was
	// still running.
	SkippedRuns int `json:"skippedRuns,omitempty"`
	// LastSkippedTime is the latest skipped tick.
	LastSkippedTime *metav1.Time `json:"lastSkippedTime,omitempty"`
	// Message says why the schedule does not run (an expression the parser rejects, paused), else empty.
	Message string `json:"message,omitempty"`
	// Conditions holds Ready: True while the schedule runs, False with reason Paused or InvalidSchedule.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
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
