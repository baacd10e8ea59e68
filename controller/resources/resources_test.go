package resources

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	fakedynamic "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func obj(apiVersion, kind, ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl"}})
	return u
}

func TestWriteArchivesNamespacedResourcesWithoutNoise(t *testing.T) {
	listVerbs := metav1.Verbs{"get", "list"}
	disco := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	disco.Resources = []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "configmaps", Namespaced: true, Kind: "ConfigMap", Verbs: listVerbs},
			{Name: "secrets", Namespaced: true, Kind: "Secret", Verbs: listVerbs},
			{Name: "events", Namespaced: true, Kind: "Event", Verbs: listVerbs},
			{Name: "endpoints", Namespaced: true, Kind: "Endpoints", Verbs: listVerbs},
			{Name: "pods", Namespaced: true, Kind: "Pod", Verbs: listVerbs},
			{Name: "pods/log", Namespaced: true, Kind: "Pod", Verbs: metav1.Verbs{"get"}},
			{Name: "bindings", Namespaced: true, Kind: "Binding", Verbs: metav1.Verbs{"create"}},
			{Name: "namespaces", Namespaced: false, Kind: "Namespace", Verbs: listVerbs},
		}},
		{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{{Name: "deployments", Namespaced: true, Kind: "Deployment", Verbs: listVerbs}}},
		{GroupVersion: "coordination.k8s.io/v1", APIResources: []metav1.APIResource{{Name: "leases", Namespaced: true, Kind: "Lease", Verbs: listVerbs}}},
		{GroupVersion: "straddle.io/v1alpha1", APIResources: []metav1.APIResource{{Name: "backups", Namespaced: true, Kind: "Backup", Verbs: listVerbs}}},
	}
	gvrs := map[schema.GroupVersionResource]string{
		{Version: "v1", Resource: "configmaps"}:                           "ConfigMapList",
		{Version: "v1", Resource: "secrets"}:                              "SecretList",
		{Version: "v1", Resource: "events"}:                               "EventList",
		{Version: "v1", Resource: "endpoints"}:                            "EndpointsList",
		{Version: "v1", Resource: "pods"}:                                 "PodList",
		{Group: "apps", Version: "v1", Resource: "deployments"}:           "DeploymentList",
		{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}: "LeaseList",
		{Group: "straddle.io", Version: "v1alpha1", Resource: "backups"}:  "BackupList",
	}
	dyn := fakedynamic.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), gvrs,
		obj("v1", "ConfigMap", "a", "cm1"), obj("v1", "ConfigMap", "b", "cm2"), obj("v1", "ConfigMap", "other", "cm3"),
		obj("v1", "Event", "a", "ev"), obj("v1", "Endpoints", "a", "svc"), obj("v1", "Pod", "a", "p"),
		obj("apps/v1", "Deployment", "b", "d"), obj("coordination.k8s.io/v1", "Lease", "a", "l"),
		obj("straddle.io/v1alpha1", "Backup", "a", "bk"),
		// The app's Secret is the app's state; the install namespace's hold the keys to the storage.
		obj("v1", "Secret", "a", "db-creds"), obj("v1", "Secret", "straddle", "straddle-repository-password"),
		obj("v1", "ConfigMap", "straddle", "straddle-restore-helper"))
	c := &Collector{Discovery: disco, Dynamic: dyn, Now: func() time.Time { return time.Unix(1e9, 0) }, SecretsExcludedIn: "straddle"}
	var buf bytes.Buffer
	res, err := c.Write(context.Background(), []string{"a", "b", "straddle"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := []v1.ResourceCount{{Resource: "configmaps", Count: 3}, {Resource: "deployments.apps", Count: 1}, {Resource: "pods", Count: 1}, {Resource: "secrets", Count: 1}}
	if !reflect.DeepEqual(res.Counts, wantCounts) {
		t.Errorf("counts %+v, want %+v", res.Counts, wantCounts)
	}
	entries, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
		var doc map[string]any
		if err := json.Unmarshal(e.Data, &doc); err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		if md := doc["metadata"].(map[string]any); md["managedFields"] != nil {
			t.Errorf("%s keeps managed fields", e.Name)
		}
	}
	want := []string{"configmaps/a/cm1.json", "configmaps/b/cm2.json", "configmaps/straddle/straddle-restore-helper.json", "deployments.apps/b/d.json", "pods/a/p.json", "secrets/a/db-creds.json"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("entries %q, want %q", names, want)
	}
}

// A backup of many namespaces lists each resource once across the cluster and keeps only its namespaces.
func TestWriteManyNamespacesListsClusterWide(t *testing.T) {
	disco := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	disco.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "configmaps", Namespaced: true, Kind: "ConfigMap", Verbs: metav1.Verbs{"list"}}}}}
	var objs []runtime.Object
	var selected []string
	for i := range perNamespaceLimit + 2 {
		ns := fmt.Sprintf("ns%d", i)
		objs = append(objs, obj("v1", "ConfigMap", ns, "cm"))
		if i > 0 {
			selected = append(selected, ns)
		}
	}
	dyn := fakedynamic.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{{Version: "v1", Resource: "configmaps"}: "ConfigMapList"}, objs...)
	c := &Collector{Discovery: disco, Dynamic: dyn}
	var buf bytes.Buffer
	res, err := c.Write(context.Background(), selected, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Counts) != 1 || res.Counts[0].Count != len(selected) {
		t.Errorf("counts %+v, want %d configmaps", res.Counts, len(selected))
	}
	lists := 0
	for _, a := range dyn.Actions() {
		if a.GetVerb() == "list" {
			lists++
			if a.GetNamespace() != "" {
				t.Errorf("listed namespace %s alone", a.GetNamespace())
			}
		}
	}
	if lists != 1 {
		t.Errorf("%d list requests, want 1", lists)
	}
	entries, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name == "configmaps/ns0/cm.json" {
			t.Error("archive has an object of a namespace not selected")
		}
	}
}
