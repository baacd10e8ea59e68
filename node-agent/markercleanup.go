package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// restoreWaitContainer is the restored pod's init container that waits for the markers (DESIGN §8).
const restoreWaitContainer = "restore-wait"

// MarkerCleanupReconciler removes a completed PodVolumeRestore's marker folder from its volume once the
// restored pod's app starts. The restore helper removes the folder itself when it can; running unprivileged
// under a volume root it may not write (root's, mode 0755, say), it cannot, and exits 0 anyway: the data is
// complete. The folder is then only noise for the app, and is removed here.
type MarkerCleanupReconciler struct {
	// Client reads this node's PodVolumeRestores and restored pods from the manager's cache (CacheOptions).
	Client client.Client
	// APIReader reads the pods' claims, to find a claim's volume folder.
	APIReader client.Reader
	// NodeName is the node this agent serves; HostPodsDir where the kubelet's pods directory is mounted.
	NodeName, HostPodsDir string
}

// Reconcile removes pvr's marker folder if pvr is Completed, its pod's app has started, and the folder
// still holds this restore's marker (a folder without it is not ours to remove).
func (r *MarkerCleanupReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pvr v1.PodVolumeRestore
	if err := r.Client.Get(ctx, req.NamespacedName, &pvr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if pvr.Spec.Node != r.NodeName || pvr.Status.Phase != v1.VolumePhaseCompleted {
		return ctrl.Result{}, nil
	}
	var pod corev1.Pod
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: pvr.Spec.Pod.Namespace, Name: pvr.Spec.Pod.Name}, &pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// The pod's changes bring the PodVolumeRestore back here: nothing to poll for.
	if string(pod.UID) != pvr.Spec.Pod.UID || !appStarted(&pod) {
		return ctrl.Result{}, nil
	}
	uid, err := restoreUIDOf(&pvr)
	if err != nil {
		return ctrl.Result{}, nil
	}
	dir, err := restoreVolumeDir(ctx, r.APIReader, r.HostPodsDir, &pvr)
	if err != nil {
		// The pod is going, or its folder is: nothing is left to clean.
		return ctrl.Result{}, nil
	}
	removed, err := removeMarkerDir(dir, uid)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("remove the marker folder of %s/%s volume %s: %w", pod.Namespace, pod.Name, pvr.Spec.Volume, err)
	}
	if removed {
		logf.FromContext(ctx).Info("marker folder removed after the app started (the restore helper could not)",
			"namespace", pod.Namespace, "pod", pod.Name, "volume", pvr.Spec.Volume)
	}
	return ctrl.Result{}, nil
}

// appStarted reports whether the pod's restore-wait container finished with success, so the app's
// containers run (or the init containers after it): the marker has done its work.
func appStarted(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodRunning {
		return true
	}
	for _, s := range pod.Status.InitContainerStatuses {
		if s.Name == restoreWaitContainer {
			return s.State.Terminated != nil && s.State.Terminated.ExitCode == 0
		}
	}
	return false
}

// removeMarkerDir removes MarkerDir at the volume root dir if it holds the marker of restore uid, or
// nothing: a helper that cannot remove the folder (its parent is not writable to it) still empties it, the
// folder being world-writable. Through an os.Root, so a MarkerDir swapped for a symlink by the app is never
// followed out of the volume.
func removeMarkerDir(dir, uid string) (bool, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return false, err
	}
	defer root.Close()
	fi, err := root.Lstat(MarkerDir)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !fi.IsDir() {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	fi, err = root.Lstat(MarkerDir + "/" + uid)
	switch {
	case err == nil && fi.Mode().IsRegular():
		return true, root.RemoveAll(MarkerDir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	// Not this restore's marker: only an empty folder goes (Remove fails on one that is not).
	if err := root.Remove(MarkerDir); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// SetupWithManager runs the reconciler in mgr, whose cache should come from CacheOptions: it watches this
// node's PodVolumeRestores and its restored pods, a pod's change bringing back its PodVolumeRestores.
func (r *MarkerCleanupReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil || r.APIReader == nil || r.NodeName == "" || r.HostPodsDir == "" {
		return errors.New("MarkerCleanupReconciler needs Client, APIReader, NodeName and HostPodsDir")
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("markercleanup").
		For(&v1.PodVolumeRestore{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.restoresOfPod)).
		// Tests run several agents (nodes) in one process; each manager's controller has this name.
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true)}).
		Complete(r)
}

// restoresOfPod lists this node's PodVolumeRestores into pod.
func (r *MarkerCleanupReconciler) restoresOfPod(ctx context.Context, obj client.Object) []ctrl.Request {
	var list v1.PodVolumeRestoreList
	if err := r.Client.List(ctx, &list, client.MatchingLabels{v1.NodeLabel: r.NodeName}); err != nil {
		logf.FromContext(ctx).Error(err, "list PodVolumeRestores of a restored pod", "namespace", obj.GetNamespace(), "pod", obj.GetName())
		return nil
	}
	var out []ctrl.Request
	for _, p := range list.Items {
		if p.Spec.Pod.Namespace == obj.GetNamespace() && p.Spec.Pod.Name == obj.GetName() && p.Spec.Pod.UID == string(obj.GetUID()) {
			out = append(out, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
		}
	}
	return out
}
