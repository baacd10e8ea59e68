package controller

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/resources"
)

// archivedPod is a pod as the resources archive holds it, controlled by ownerKind/ownerName ("" for none).
func archivedPod(ns, name, ownerKind, ownerName, phase string, volumes ...string) resources.Entry {
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"namespace": ns, "name": name, "uid": "old-" + name},
		"status":   map[string]any{"phase": phase}}
	if ownerKind != "" {
		apiVersion := "apps/v1"
		if ownerKind == "Job" {
			apiVersion = "batch/v1"
		}
		pod["metadata"].(map[string]any)["ownerReferences"] = []any{map[string]any{"apiVersion": apiVersion, "kind": ownerKind, "name": ownerName, "uid": "old", "controller": true}}
	}
	var vols []any
	for _, v := range volumes {
		vols = append(vols, map[string]any{"name": v, "emptyDir": map[string]any{}})
	}
	pod["spec"] = map[string]any{"containers": []any{map[string]any{"name": "app"}}, "volumes": vols}
	data, _ := json.Marshal(pod)
	return resources.Entry{Name: fmt.Sprintf("pods/%s/%s.json", ns, name), Data: data}
}

func completedPVB(ns, pod, volume, snapshot string) v1.PodVolumeBackup {
	return v1.PodVolumeBackup{
		Spec:   v1.PodVolumeBackupSpec{Pod: v1.PodReference{Namespace: ns, Name: pod}, Volume: volume},
		Status: v1.PodVolumeBackupStatus{Phase: v1.VolumePhaseCompleted, SnapshotID: snapshot},
	}
}

// matchTestBackup: StatefulSet db (db-0, db-1), ReplicaSet web-1 (web-1-a, web-1-b), a Job's finished pod and
// a pod with no volume snapshots, in namespace voting; StatefulSet db also in namespace other.
func matchTestBackup(t *testing.T) map[string][]backedUpPod {
	t.Helper()
	sb := &storedBackup{
		Entries: []resources.Entry{
			archivedPod("voting", "db-0", "StatefulSet", "db", "Running", "data", "tmp"),
			archivedPod("voting", "db-1", "StatefulSet", "db", "Running", "data"),
			archivedPod("voting", "web-1-a", "ReplicaSet", "web-1", "Running", "cache"),
			archivedPod("voting", "web-1-b", "ReplicaSet", "web-1", "Running", "cache"),
			archivedPod("voting", "migrate-x", "Job", "migrate", "Succeeded", "scratch"),
			archivedPod("voting", "plain", "", "", "Running", "data"),
			archivedPod("voting", "novol", "ReplicaSet", "api-1", "Running", "cache"),
			archivedPod("other", "db-0", "StatefulSet", "db", "Running", "data"),
			{Name: "services/voting/db.json", Data: []byte(`{"kind":"Service"}`)},
		},
		PodVolumeBackups: []v1.PodVolumeBackup{
			completedPVB("voting", "db-0", "data", "s-db0-data"),
			completedPVB("voting", "db-1", "data", "s-db1-data"),
			completedPVB("voting", "web-1-a", "cache", "s-a"),
			completedPVB("voting", "web-1-b", "cache", "s-b"),
			completedPVB("voting", "migrate-x", "scratch", "s-job"),
			completedPVB("voting", "plain", "data", "s-plain"),
			completedPVB("other", "db-0", "data", "s-other"),
		},
	}
	got, err := backedUpPods(sb)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestBackedUpPodsKeepsPodsWithSnapshots(t *testing.T) {
	got := matchTestBackup(t)
	var names []string
	for _, bp := range got["voting"] {
		names = append(names, bp.Name)
	}
	// Not migrate-x (finished, so not restored either) nor novol (no snapshot).
	if strings.Join(names, ",") != "db-0,db-1,plain,web-1-a,web-1-b" {
		t.Errorf("voting pods %v", names)
	}
	if db0 := got["voting"][0]; db0.Owner == nil || db0.Owner.Kind != "StatefulSet" || db0.Snapshots["data"] != "s-db0-data" || len(db0.Snapshots) != 1 {
		t.Errorf("db-0 %+v", db0)
	}
	if got["voting"][2].Owner != nil {
		t.Errorf("plain has owner %+v", got["voting"][2].Owner)
	}
}

func TestMatchBackedUpPod(t *testing.T) {
	backedUp := matchTestBackup(t)
	sts := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: "new", Controller: ptr.To(true)}
	rs := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", UID: "new", Controller: ptr.To(true)}
	for _, tc := range []struct {
		name       string
		spec       v1.RestoreSpec
		target     string
		pod        string
		owner      *metav1.OwnerReference
		claimed    []string
		want       string // namespace/name matched
		wantReason string
	}{
		{name: "statefulset ordinal", target: "voting", pod: "db-1", owner: sts, want: "voting/db-1"},
		{name: "statefulset ordinal, the other pod's volume claimed", target: "voting", pod: "db-0", owner: sts, claimed: []string{"voting/s-db1-data"}, want: "voting/db-0"},
		{name: "statefulset ordinal not backed up", target: "voting", pod: "db-2", owner: sts, wantReason: "0 backed-up pods of StatefulSet db have ordinal 2"},
		{name: "statefulset pod name without ordinal", target: "voting", pod: "db-x", owner: sts, wantReason: "not db-<ordinal>"},
		{name: "namespace mapping", spec: v1.RestoreSpec{NamespaceMapping: map[string]string{"voting": "voting-copy"}}, target: "voting-copy", pod: "db-0", owner: sts, want: "voting/db-0"},
		{name: "unmapped source is not restored into the mapped target", spec: v1.RestoreSpec{NamespaceMapping: map[string]string{"voting": "voting-copy"}}, target: "voting", pod: "db-0", owner: sts, wantReason: "no pod of StatefulSet db"},
		{name: "two sources into one target", spec: v1.RestoreSpec{NamespaceMapping: map[string]string{"other": "voting"}}, target: "voting", pod: "db-0", owner: sts, wantReason: "2 backed-up pods of StatefulSet db have ordinal 0"},
		{name: "excluded source", spec: v1.RestoreSpec{ExcludedNamespaces: []string{"voting"}}, target: "voting", pod: "db-0", owner: sts, wantReason: "no pod of StatefulSet db"},
		{name: "other owner", target: "voting", pod: "db-0", owner: &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "cache"}, wantReason: "no pod of StatefulSet cache"},
		{name: "same name, other group", target: "voting", pod: "db-0", owner: &metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "StatefulSet", Name: "db"}, wantReason: "no pod of StatefulSet db"},
		{name: "replicaset, one unclaimed", target: "voting", pod: "web-1-zz", owner: rs, claimed: []string{"voting/s-a"}, want: "voting/web-1-b"},
		{name: "replicaset, both unclaimed", target: "voting", pod: "web-1-zz", owner: rs, wantReason: "2 backed-up pods of ReplicaSet web-1 have no pod standing for them (web-1-a, web-1-b)"},
		{name: "replicaset, all claimed", target: "voting", pod: "web-1-zz", owner: rs, claimed: []string{"voting/s-a", "voting/s-b"}, wantReason: "every backed-up pod of ReplicaSet web-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claimed := map[string]bool{}
			for _, c := range tc.claimed {
				claimed[c] = true
			}
			m := matchBackedUpPod(backedUp, sourceNamespaces(tc.spec, tc.target, backedUp), tc.pod, tc.owner, claimed)
			if tc.want != "" {
				if m.Pod == nil || m.Pod.Namespace+"/"+m.Pod.Name != tc.want {
					t.Fatalf("matched %+v (%s), want %s", m.Pod, m.Reason, tc.want)
				}
				return
			}
			if m.Pod != nil || !strings.Contains(m.Reason, tc.wantReason) {
				t.Errorf("matched %+v, reason %q; want no match because %q", m.Pod, m.Reason, tc.wantReason)
			}
		})
	}
}
