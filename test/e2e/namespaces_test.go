//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

// deleteNamespace deletes namespace ns as the namespace controller would (envtest runs no
// controller-manager): every namespaced object in it goes (pods through the kubelet simulator, which removes
// their folders; claims lose the pvc-protection finalizer nobody else would lift), then the namespace is
// finalized and disappears.
func (c *cluster) deleteNamespace(t testing.TB, ns string) {
	t.Helper()
	ctx := context.Background()
	dc, err := discovery.NewDiscoveryClientForConfig(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Discovery can fail for one group and still list the others, as the namespace controller tolerates.
	lists, err := discovery.ServerPreferredNamespacedResources(dc)
	if err != nil && len(lists) == 0 {
		t.Fatalf("discover namespaced resources: %v", err)
	}
	var gvrs []schema.GroupVersionResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if slices.Contains(r.Verbs, "deletecollection") && slices.Contains(r.Verbs, "list") {
				gvrs = append(gvrs, gv.WithResource(r.Name))
			}
		}
	}
	for _, gvr := range gvrs {
		if err := dyn.Resource(gvr).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("delete every %s in namespace %s: %v", gvr.Resource, ns, err)
		}
	}
	c.waitFor(t, "namespace "+ns+" to be empty", 2*time.Minute, func() (bool, error) {
		if err := c.releaseClaims(ctx, ns); err != nil {
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
	if err := c.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete namespace %s: %v", ns, err)
	}
	c.waitFor(t, "namespace "+ns+" to go", time.Minute, func() (bool, error) {
		n, err := c.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if len(n.Spec.Finalizers) > 0 {
			n.Spec.Finalizers = nil
			_, err = c.cs.CoreV1().Namespaces().Finalize(ctx, n, metav1.UpdateOptions{})
		}
		return false, err
	})
}

// releaseClaims lifts the pvc-protection finalizer of the namespace's claims being deleted, as the PVC
// protection controller does once no pod uses them.
func (c *cluster) releaseClaims(ctx context.Context, ns string) error {
	pvcs, err := c.cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, pvc := range pvcs.Items {
		if pvc.DeletionTimestamp == nil || len(pvc.Finalizers) == 0 {
			continue
		}
		pvc.Finalizers = slices.DeleteFunc(pvc.Finalizers, func(f string) bool { return f == "kubernetes.io/pvc-protection" })
		if _, err := c.cs.CoreV1().PersistentVolumeClaims(ns).Update(ctx, &pvc, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("release claim %s: %w", pvc.Name, err)
		}
	}
	return nil
}
