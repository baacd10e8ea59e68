package controller

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func location(name string, spec v1.BackupStorageLocationSpec) *v1.BackupStorageLocation {
	return &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "straddle"}, Spec: spec}
}

func TestBackupStorageLocationReconciler(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	_ = os.WriteFile(file, nil, 0o600)
	for _, tc := range []struct {
		name      string
		spec      v1.BackupStorageLocationSpec
		phase     v1.LocationPhase
		inMessage string
	}{
		{"writable-dir", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: dir}}, v1.LocationAvailable, "reachable"},
		{"missing-dir", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: filepath.Join(dir, "nope")}}, v1.LocationUnavailable, "no such file"},
		{"not-a-dir", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: file}}, v1.LocationUnavailable, "not a directory"},
		{"s3-no-secret", v1.BackupStorageLocationSpec{Provider: "s3", S3: &v1.S3Location{Endpoint: "https://s3.local", Bucket: "bkt",
			CredentialsSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "cloud"}}}, v1.LocationUnavailable, "credentials Secret straddle/absent"},
		{"s3-bad-endpoint", v1.BackupStorageLocationSpec{Provider: "s3", S3: &v1.S3Location{Endpoint: "https://s3.local/path", Bucket: "bkt"}}, v1.LocationUnavailable, "want http(s)://host[:port]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			_ = v1.AddToScheme(scheme)
			_ = corev1.AddToScheme(scheme)
			loc := location(tc.name, tc.spec)
			cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(loc).WithStatusSubresource(loc).Build()
			clk := clocktesting.NewFakePassiveClock(time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC))
			r := &BackupStorageLocationReconciler{Client: cl, Clock: clk, Interval: 30 * time.Second}
			key := types.NamespacedName{Namespace: "straddle", Name: tc.name}
			res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key})
			if err != nil {
				t.Fatal(err)
			}
			if res.RequeueAfter != 30*time.Second {
				t.Errorf("requeue after %v, want the validation interval", res.RequeueAfter)
			}
			var got v1.BackupStorageLocation
			_ = cl.Get(context.Background(), key, &got)
			if got.Status.Phase != tc.phase || !strings.Contains(got.Status.Message, tc.inMessage) {
				t.Errorf("status %s %q, want %s containing %q", got.Status.Phase, got.Status.Message, tc.phase, tc.inMessage)
			}
			if got.Status.LastValidationTime == nil || !got.Status.LastValidationTime.Time.Equal(clk.Now()) {
				t.Errorf("last validation %v, want the clock's time", got.Status.LastValidationTime)
			}
			if len(got.Status.Conditions) != 1 || (got.Status.Conditions[0].Status == metav1.ConditionTrue) != (tc.phase == v1.LocationAvailable) {
				t.Errorf("conditions %+v", got.Status.Conditions)
			}
		})
	}
}

func TestReconcileOfADeletedLocationIsDone(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = v1.AddToScheme(scheme)
	r := &BackupStorageLocationReconciler{Client: fake.NewClientBuilder().WithScheme(scheme).Build(), Clock: clocktesting.NewFakePassiveClock(time.Now())}
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "straddle", Name: "gone"}})
	if err != nil || res.RequeueAfter != 0 {
		t.Fatalf("res %+v, err %v", res, err)
	}
}
