//go:build integration

package controller

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// TestRestoreHelperConfigMapOverrides: a bad value in the restore helper's ConfigMap fails the Restore with
// the key named, before anything is created; once fixed, the restored pod's restore-wait runs as the
// ConfigMap's user and group and the pod pulls with its image pull secrets.
func TestRestoreHelperConfigMapOverrides(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := backupSeed(t, e)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: RestoreHelperConfigMap}, Data: map[string]string{
		"runAsUser": "root"}}
	e.create(cm)
	re := startRestores(t, e.ctx, restConfig, e.ns, nil)

	bad := randomName("bad")
	re.restore("bad", v1.RestoreSpec{BackupName: s.backup, NamespaceMapping: map[string]string{s.ns: bad}})
	rs := re.waitRestorePhase("bad", v1.PhaseFailed)
	if len(rs.Status.Errors) != 1 || !strings.Contains(rs.Status.Errors[0], "ConfigMap "+e.ns+"/straddle-restore-helper key runAsUser") {
		t.Errorf("errors %q, want the ConfigMap's key runAsUser named", rs.Status.Errors)
	}
	var pods corev1.PodList
	if err := re.cl.List(e.ctx, &pods, client.InNamespace(bad)); err != nil || len(pods.Items) != 0 {
		t.Errorf("a restore with a bad helper ConfigMap created pods %v (%v)", pods.Items, err)
	}

	cm.Data = map[string]string{"runAsUser": "1000", "runAsGroup": "3000", "imagePullSecrets": "regcred,mirror-cred"}
	if err := re.cl.Update(e.ctx, cm); err != nil {
		t.Fatal(err)
	}
	target := randomName("good")
	re.restore("good", v1.RestoreSpec{BackupName: s.backup, NamespaceMapping: map[string]string{s.ns: target}})
	re.waitResources("good")
	var pod corev1.Pod
	if err := re.cl.Get(e.ctx, client.ObjectKey{Namespace: target, Name: "db-0"}, &pod); err != nil {
		t.Fatal(err)
	}
	sc := pod.Spec.InitContainers[0].SecurityContext
	if pod.Spec.InitContainers[0].Name != RestoreWaitContainer || *sc.RunAsUser != 1000 || *sc.RunAsGroup != 3000 || !*sc.RunAsNonRoot {
		t.Errorf("restore-wait %+v", pod.Spec.InitContainers[0])
	}
	var names []string
	for _, r := range pod.Spec.ImagePullSecrets {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "regcred,mirror-cred" {
		t.Errorf("imagePullSecrets %q", names)
	}
}
