//go:build integration

package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// cl talks to a real kube-apiserver and etcd (make test-integration builds them into bin/) with the CRDs
// from deploy/crds installed.
var cl client.Client

const ns = "default"

func TestMain(m *testing.M) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "..", "bin")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "deploy", "crds")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start kube-apiserver and etcd from %s (make test-integration builds them): %v\n", assets, err)
		os.Exit(1)
	}
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	cl, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// object builds an unstructured object, so tests can send what the typed structs cannot express (a TTL
// that is not a duration), as a user's YAML would.
func object(kind, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(v1.GroupVersion.String())
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

func mustReject(t *testing.T, obj client.Object, field string) {
	t.Helper()
	err := cl.Create(ctx(t), obj)
	if err == nil {
		t.Fatalf("%s %s accepted", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName())
	}
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), field) {
		t.Fatalf("%s: err = %v, want an Invalid error naming %s", obj.GetName(), err, field)
	}
}

func pvbSpec(node string) map[string]any {
	spec := map[string]any{
		"pod":             map[string]any{"namespace": "app", "name": "db-0"},
		"volume":          "data",
		"storageLocation": "default",
	}
	if node != "-" {
		spec["node"] = node
	}
	return spec
}

func TestBackupTTL(t *testing.T) {
	for i, bad := range []string{"forever", "30d", "1 hour", "-5h"} {
		mustReject(t, object("Backup", fmt.Sprintf("bad-ttl-%d", i), map[string]any{"ttl": bad}), "spec.ttl")
	}
	good := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "good-ttl", Namespace: ns}, Spec: v1.BackupSpec{TTL: &metav1.Duration{Duration: 36 * time.Hour}}}
	if err := cl.Create(ctx(t), good); err != nil {
		t.Fatal(err)
	}
	defaulted := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "default-ttl", Namespace: ns}}
	if err := cl.Create(ctx(t), defaulted); err != nil {
		t.Fatal(err)
	}
	if defaulted.Spec.TTL == nil || defaulted.Spec.TTL.Duration != 720*time.Hour {
		t.Fatalf("TTL defaulted to %v, want 720h", defaulted.Spec.TTL)
	}
}

func TestScheduleCron(t *testing.T) {
	for i, bad := range []string{"every day at noon", "* * *", "* * * * * *", "@sometimes", "@every forever", ""} {
		mustReject(t, object("Schedule", fmt.Sprintf("bad-cron-%d", i), map[string]any{"schedule": bad}), "spec.schedule")
	}
	for i, good := range []string{"*/15 * * * *", "0 3 * * 1-5", "30 2 1 JAN,JUL SUN", "@daily", "@every 6h30m"} {
		s := &v1.Schedule{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("good-cron-%d", i), Namespace: ns}, Spec: v1.ScheduleSpec{Schedule: good}}
		if err := cl.Create(ctx(t), s); err != nil {
			t.Errorf("schedule %q rejected: %v", good, err)
		}
	}
}

func TestPodVolumeBackupNeedsANode(t *testing.T) {
	mustReject(t, object("PodVolumeBackup", "no-node", pvbSpec("-")), "spec.node")
	mustReject(t, object("PodVolumeBackup", "empty-node", pvbSpec("")), "spec.node")
	mustReject(t, object("PodVolumeRestore", "bad-snapshot", map[string]any{
		"node": "n", "pod": map[string]any{"namespace": "a", "name": "b"}, "volume": "v", "storageLocation": "s", "snapshotID": "latest",
	}), "spec.snapshotID")
}

func TestStorageLocationNeedsItsProviderSection(t *testing.T) {
	mustReject(t, object("BackupStorageLocation", "s3-without-s3", map[string]any{"provider": "s3"}), "s3 section")
	mustReject(t, object("BackupStorageLocation", "ftp", map[string]any{"provider": "ftp"}), "spec.provider")
	mustReject(t, object("BackupStorageLocation", "bad-endpoint", map[string]any{"provider": "s3", "s3": map[string]any{"endpoint": "minio:9000", "bucket": "backups"}}), "spec.s3.endpoint")
	good := &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "minio", Namespace: ns}, Spec: v1.BackupStorageLocationSpec{
		Provider: "s3", S3: &v1.S3Location{Endpoint: "http://minio.straddle:9000", Bucket: "backups", ForcePathStyle: true}}}
	if err := cl.Create(ctx(t), good); err != nil {
		t.Fatal(err)
	}
}

func TestEveryKindAcceptsAValidObject(t *testing.T) {
	objs := []client.Object{
		&v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: ns}, Spec: v1.RestoreSpec{BackupName: "b", NamespaceMapping: map[string]string{"voting": "voting-copy"}}},
		&v1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Name: "default-voting", Namespace: ns}, Spec: v1.BackupRepositorySpec{StorageLocation: "default", VolumeNamespace: "voting"}},
		&v1.PodVolumeRestore{ObjectMeta: metav1.ObjectMeta{Name: "pvr", Namespace: ns}, Spec: v1.PodVolumeRestoreSpec{Node: "n1", Pod: v1.PodReference{Namespace: "a", Name: "b"},
			Volume: "data", StorageLocation: "default", SnapshotID: strings.Repeat("ab", 32)}},
	}
	for _, o := range objs {
		if err := cl.Create(ctx(t), o); err != nil {
			t.Errorf("%T rejected: %v", o, err)
		}
	}
	mustReject(t, object("Restore", "no-backup", map[string]any{}), "spec.backupName")
}

// A node-agent lists only its node's work, by the selectable field spec.node.
func TestPodVolumeBackupsSelectableByNode(t *testing.T) {
	for i, node := range []string{"node-a", "node-b", "node-a"} {
		pvb := &v1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sel-%d", i), Namespace: ns},
			Spec: v1.PodVolumeBackupSpec{Node: node, Pod: v1.PodReference{Namespace: "app", Name: "db-0"}, Volume: "data", StorageLocation: "default"}}
		if err := cl.Create(ctx(t), pvb); err != nil {
			t.Fatal(err)
		}
	}
	var list v1.PodVolumeBackupList
	if err := cl.List(ctx(t), &list, client.InNamespace(ns), client.MatchingFields{"spec.node": "node-a"}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Fatalf("listed %d PodVolumeBackups of node-a, want 2", len(list.Items))
	}
	for _, it := range list.Items {
		if it.Spec.Node != "node-a" {
			t.Fatalf("field selector returned %s of %s", it.Name, it.Spec.Node)
		}
	}
}
