package nodeagent

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// CacheOptions restrict a node-agent manager's cache to the PodVolumeBackups and PodVolumeRestores labelled
// with its node, and to the restored pods (v1.RestoreLabel) bound to it, so a thousand-node cluster's agents
// do not each watch every node's work.
func CacheOptions(node string) cache.Options {
	mine := labels.SelectorFromSet(labels.Set{v1.NodeLabel: node})
	// A constant key: it always parses; were it not to, the cache would merely hold more pods.
	restored, err := labels.Parse(v1.RestoreLabel)
	if err != nil {
		restored = labels.Everything()
	}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&v1.PodVolumeBackup{}:  {Label: mine},
		&v1.PodVolumeRestore{}: {Label: mine},
		&corev1.Pod{}:          {Label: restored, Field: fields.OneTermEqualSelector("spec.nodeName", node)},
	}}
}

// SetupWithManager fills unset tunables with their defaults and runs the reconciler in mgr, at most
// concurrency backups at once. mgr's cache should come from CacheOptions.
func (r *PodVolumeBackupReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	if r.Client == nil || r.APIReader == nil || r.NodeName == "" || r.HostPodsDir == "" || r.Namespace == "" {
		return errors.New("PodVolumeBackupReconciler needs Client, APIReader, NodeName, Namespace and HostPodsDir")
	}
	if concurrency < 1 {
		return fmt.Errorf("concurrency %d must be at least 1", concurrency)
	}
	r.setDefaults()
	return ctrl.NewControllerManagedBy(mgr).
		Named("podvolumebackup").
		For(&v1.PodVolumeBackup{}).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: concurrency,
			// Tests run several agents (nodes) in one process; each manager's controller has this name.
			SkipNameValidation: ptr.To(true),
		}).
		Complete(r)
}

func (r *PodVolumeBackupReconciler) setDefaults() {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.CheckpointInterval <= 0 {
		r.CheckpointInterval = DefaultCheckpointInterval
	}
	if r.ProgressInterval <= 0 {
		r.ProgressInterval = DefaultProgressInterval
	}
	if r.LockWait <= 0 {
		r.LockWait = DefaultLockWait
	}
}

// SetupWithManager fills unset tunables with their defaults and runs the reconciler in mgr, at most
// concurrency restores at once (apart from the backups' limit). mgr's cache should come from CacheOptions.
func (r *PodVolumeRestoreReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	if r.Client == nil || r.APIReader == nil || r.NodeName == "" || r.HostPodsDir == "" || r.Namespace == "" {
		return errors.New("PodVolumeRestoreReconciler needs Client, APIReader, NodeName, Namespace and HostPodsDir")
	}
	if concurrency < 1 {
		return fmt.Errorf("concurrency %d must be at least 1", concurrency)
	}
	r.setDefaults()
	return ctrl.NewControllerManagedBy(mgr).
		Named("podvolumerestore").
		For(&v1.PodVolumeRestore{}).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: concurrency,
			SkipNameValidation:      ptr.To(true),
		}).
		Complete(r)
}

func (r *PodVolumeRestoreReconciler) setDefaults() {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = DefaultRestoreMaxAttempts
	}
	if r.FolderWait <= 0 {
		r.FolderWait = DefaultFolderWait
	}
	if r.FolderPoll <= 0 {
		r.FolderPoll = DefaultFolderPoll
	}
	if r.ProgressInterval <= 0 {
		r.ProgressInterval = DefaultProgressInterval
	}
	if r.LockWait <= 0 {
		r.LockWait = DefaultLockWait
	}
}
