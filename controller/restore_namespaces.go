package controller

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// RestoringLabel marks a namespace a Restore is restoring into, with the Restore's name as value, from the
// moment the restore first creates an object there until it ends (or is deleted). The restore webhook's
// namespaceSelector selects it, so pods elsewhere never reach the webhook (contract with deploy/base).
//
// A namespace holds one value: of two Restores into it at once, the later one's pods are prepared.
const RestoringLabel = "straddle.io/restoring"

// markRestoring labels ns with the restore's name.
func (r *RestoreReconciler) markRestoring(ctx context.Context, ns, restore string) error {
	return r.patchRestoringLabel(ctx, ns, &restore)
}

// releaseNamespaces takes RestoringLabel off every namespace whose value names restore: the restore ended, or
// is gone. Read past the cache, which does not hold namespaces.
func (r *RestoreReconciler) releaseNamespaces(ctx context.Context, restore string) error {
	var list corev1.NamespaceList
	if err := r.APIReader.List(ctx, &list, client.MatchingLabels{RestoringLabel: restore}); err != nil {
		return fmt.Errorf("list namespaces restore %s restores into: %w", restore, err)
	}
	for _, ns := range list.Items {
		if err := r.patchRestoringLabel(ctx, ns.Name, nil); err != nil {
			return err
		}
	}
	return nil
}

// patchRestoringLabel sets RestoringLabel on namespace ns to *value, or removes it for nil.
func (r *RestoreReconciler) patchRestoringLabel(ctx context.Context, ns string, value *string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{RestoringLabel: value}}})
	if err != nil {
		return fmt.Errorf("encode label patch: %w", err)
	}
	obj := &corev1.Namespace{}
	obj.Name = ns
	err = r.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
	if apierrors.IsNotFound(err) && value == nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("label namespace %s %s: %w", ns, RestoringLabel, err)
	}
	return nil
}
