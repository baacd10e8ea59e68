//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

const (
	secureNS     = "secure"
	secureCopyNS = "secure-copy"
)

// restrictedNamespace is labelled so the API server admits only pods meeting Pod Security "restricted".
func restrictedNamespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
}

// secureFill writes the data volume, whose root is root's with mode 0755 as a fresh volume's often is, and
// the sidecar's volume.
func secureFill(_ *corev1.Pod, volume, dir string) error {
	switch volume {
	case "data":
		if err := writeMixed(dir, 71); err != nil {
			return err
		}
		return os.Chmod(dir, 0o755)
	case "istio-envoy":
		return os.WriteFile(filepath.Join(dir, "envoy.sock.state"), []byte("sidecar state"), 0o644)
	}
	return nil
}

// restricted makes pod meet Pod Security "restricted": non-root, no privilege escalation, no capabilities,
// the runtime's seccomp profile.
func restricted(pod *corev1.Pod) *corev1.Pod {
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	for i := range pod.Spec.Containers {
		pod.Spec.Containers[i].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	}
	return pod
}

// TestRestoreIntoRestrictedNamespace (issue 12): a default-all backup leaves out the install's excluded
// sidecar volume; its restore into a namespace enforcing Pod Security "restricted" creates its pod (the
// injected restore-wait is admitted) and completes; the real restore helper runs as its container's UID
// 65532 against a volume root of root's with mode 0755, sees the marker, cannot remove the marker folder
// and exits 0 all the same; the node-agent removes the folder once the app started.
func TestRestoreIntoRestrictedNamespace(t *testing.T) {
	c := startCluster(t, clusterOptions{Fill: secureFill, ControllerArgs: []string{"--default-excluded-volumes", "istio-envoy,istio-data"}})
	ctx := context.Background()
	mustCreate(t, c.cl, restrictedNamespace(secureNS))

	// The API server enforces Pod Security admission (on by default in kube-apiserver).
	err := c.cl.Create(ctx, testPod(secureNS, "privileged", "", nil))
	if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("a pod breaking the restricted policy was answered %v, want it refused by PodSecurity admission", err)
	}

	c.createClaim(t, secureNS, "data-app-0", "pv-secure-app", "1Gi")
	mustCreate(t, c.cl, restricted(testPod(secureNS, "app-0", nodeA, map[string]string{runAsUserAnnotation: "true"},
		claimVolume("data", "data-app-0"), emptyDirVolume("istio-envoy"))))
	c.waitPodsRunning(t, secureNS, 1)
	orig := filepath.Join(c.dir, "secure-original")
	if out, err := exec.Command("cp", "-a", c.volumeDir(t, secureNS, "app-0", "data"), orig).CombinedOutput(); err != nil {
		t.Fatalf("copy the original volume: %v\n%s", err, out)
	}

	if res := c.cli(backupTimeout, "backup", "create", "secure-1", "--include-namespaces", secureNS, "--default-volumes-to-fs-backup", "--wait"); res.err != nil {
		t.Fatalf("backup create --wait: %s", res)
	}
	if got := sortedKeys(c.volumeBackups(t, "secure-1")); strings.Join(got, " ") != secureNS+"/app-0/data" {
		t.Fatalf("default-all backup took volumes %v, want only %s/app-0/data (istio-envoy is excluded by the install)", got, secureNS)
	}

	mustCreate(t, c.cl, restrictedNamespace(secureCopyNS))
	if res := c.cli(restoreTimeout, "restore", "create", "secure-copy", "--from-backup", "secure-1",
		"--namespace-mappings", secureNS+":"+secureCopyNS, "--wait"); res.err != nil {
		t.Fatalf("restore create --wait: %s", res)
	}
	var rs v1.Restore
	if err := c.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: "secure-copy"}, &rs); err != nil {
		t.Fatal(err)
	}
	if rs.Status.Phase != v1.PhaseCompleted || len(rs.Status.Errors) != 0 {
		t.Fatalf("restore %s, errors %q", rs.Status.Phase, rs.Status.Errors)
	}
	pods := c.waitPodsRunning(t, secureCopyNS, 1)
	pod := pods[0]
	rw := pod.Spec.InitContainers[0]
	if rw.Name != restoreWait || rw.SecurityContext == nil || rw.SecurityContext.RunAsUser == nil || *rw.SecurityContext.RunAsUser != 65532 {
		t.Fatalf("restored pod's first init container %+v, want restore-wait as user 65532", rw)
	}
	run := c.kubelet.Helper(string(pod.UID))
	if run == nil {
		t.Fatal("the simulator ran no restore helper for the restored pod")
	}
	<-run.Done()
	if run.ExitCode != 0 || !strings.Contains(run.Output, "marker folder .straddle stays") {
		t.Fatalf("restore helper exited %d; output:\n%s\nwant exit 0 after the marker, unable (as user 65532) to remove the marker folder", run.ExitCode, run.Output)
	}

	vol := c.volumeDir(t, secureCopyNS, "app-0", "data")
	fi, err := os.Stat(vol)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("restored volume root is owned by %d with mode %v, want root's 0755 as backed up", st.Uid, fi.Mode().Perm())
	}
	c.waitFor(t, "the node-agent to remove the marker folder after the app started", time.Minute, func() (bool, error) {
		_, err := os.Lstat(filepath.Join(vol, ".straddle"))
		return os.IsNotExist(err), nil
	})
	if err := compareTrees(orig, vol); err != nil {
		t.Errorf("restored volume differs from the original: %v", err)
	}
}
