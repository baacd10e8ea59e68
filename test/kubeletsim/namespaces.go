package kubeletsim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// DeleteNamespace deletes namespace ns as the namespace controller would (envtest runs no
// controller-manager): every namespaced object in it goes (pods through the kubelet simulator, which removes
// their folders; claims lose the pvc-protection finalizer nobody else would lift), then the namespace is
// finalized and disappears. Between polls it calls alive (when not nil), which stops the wait with its error:
// a server process that died.
func DeleteNamespace(ctx context.Context, cfg *rest.Config, ns string, alive func() error) error {
	// The API server's deprecation warnings about what the namespace controller deletes are no news.
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client for deleting namespace %s: %w", ns, err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("discovery client for deleting namespace %s: %w", ns, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client for deleting namespace %s: %w", ns, err)
	}
	// Discovery can fail for one group and still list the others, as the namespace controller tolerates.
	lists, err := discovery.ServerPreferredNamespacedResources(dc)
	if err != nil && len(lists) == 0 {
		return fmt.Errorf("discover namespaced resources: %w", err)
	}
	var gvrs []schema.GroupVersionResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return fmt.Errorf("discovered group version %q: %w", l.GroupVersion, err)
		}
		for _, r := range l.APIResources {
			if slices.Contains(r.Verbs, "deletecollection") && slices.Contains(r.Verbs, "list") {
				gvrs = append(gvrs, gv.WithResource(r.Name))
			}
		}
	}
	for _, gvr := range gvrs {
		if err := dyn.Resource(gvr).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete every %s in namespace %s: %w", gvr.Resource, ns, err)
		}
	}
	err = WaitFor(ctx, "namespace "+ns+" to be empty", 2*time.Minute, alive, func() (bool, error) {
		if err := releaseClaims(ctx, cs, ns); err != nil {
			return false, err
		}
		for _, gvr := range gvrs {
			l, err := dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, fmt.Errorf("list %s: %w", gvr.Resource, err)
			}
			if n := len(l.Items); n > 0 {
				return false, fmt.Errorf("%d %s left, %s first", n, gvr.Resource, l.Items[0].GetName())
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	return WaitFor(ctx, "namespace "+ns+" to go", time.Minute, alive, func() (bool, error) {
		n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if len(n.Spec.Finalizers) > 0 {
			n.Spec.Finalizers = nil
			_, err = cs.CoreV1().Namespaces().Finalize(ctx, n, metav1.UpdateOptions{})
		}
		return false, err
	})
}

// releaseClaims lifts the pvc-protection finalizer of the namespace's claims being deleted, as the PVC
// protection controller does once no pod uses them.
func releaseClaims(ctx context.Context, cs kubernetes.Interface, ns string) error {
	pvcs, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, pvc := range pvcs.Items {
		if pvc.DeletionTimestamp == nil || len(pvc.Finalizers) == 0 {
			continue
		}
		pvc.Finalizers = slices.DeleteFunc(pvc.Finalizers, func(f string) bool { return f == "kubernetes.io/pvc-protection" })
		if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Update(ctx, &pvc, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("release claim %s: %w", pvc.Name, err)
		}
	}
	return nil
}

// WaitFor polls ok every 100 ms until it says true; it gives up at timeout, when ctx ends, or when alive
// (when not nil) reports an error, such as a server process that died.
func WaitFor(ctx context.Context, what string, timeout time.Duration, alive func() error, ok func() (bool, error)) error {
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		done, err := ok()
		if done {
			return nil
		}
		last = err
		if alive != nil {
			if err := alive(); err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, errors.Join(ctx.Err(), last))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %v waiting for %s (last error: %v)", timeout, what, last)
}
