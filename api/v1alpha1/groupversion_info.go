// Package v1alpha1 is the Straddle API (group straddle.io): storage locations, backups, schedules and
// restores of pod volumes, and the per-volume work the node-agents do.
// +kubebuilder:object:generate=true
// +groupName=straddle.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every kind here.
	GroupVersion = schema.GroupVersion{Group: "straddle.io", Version: "v1alpha1"}
	// SchemeBuilder registers the kinds with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&BackupStorageLocation{}, &BackupStorageLocationList{},
		&Backup{}, &BackupList{},
		&Schedule{}, &ScheduleList{},
		&Restore{}, &RestoreList{},
		&PodVolumeBackup{}, &PodVolumeBackupList{},
		&PodVolumeRestore{}, &PodVolumeRestoreList{},
		&BackupRepository{}, &BackupRepositoryList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
