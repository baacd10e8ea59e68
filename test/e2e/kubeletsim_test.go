//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/straddle-io/straddle/test/kubeletsim"
	"github.com/straddle-io/straddle/test/trees"
)

// The simulator's names, under the short names the tests use.
type fillFunc = kubeletsim.FillFunc

const (
	hostnameLabel       = kubeletsim.HostnameLabel
	restoreWait         = kubeletsim.RestoreWait
	restoresMount       = kubeletsim.RestoresMount
	localInitImage      = kubeletsim.LocalInitImage
	runAsUserAnnotation = kubeletsim.RunAsUserAnnotation
)

var listTree = kubeletsim.ListTree

// The fixture writers and tree comparison of test/trees, under the tests' short names.
const maxDiffs = trees.MaxDiffs

var (
	compareTrees       = trees.Compare
	compareTreesExcept = trees.CompareExcept
	treeEntries        = trees.Entries
	writeRandomFile    = trees.WriteRandomFile
	writeSmallFiles    = trees.WriteSmallFiles
	writeMixed         = trees.WriteMixed
)

// startKubelet runs the simulator (test/kubeletsim) until the test ends, with the restore helper TestMain built.
func startKubelet(t *testing.T, cfg *rest.Config, opts kubeletsim.Options) *kubeletsim.Kubelet {
	t.Helper()
	opts.RestoreHelper = restoreHelperBin
	k, err := kubeletsim.Start(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	return k
}

// volumeDir is the folder on its node of volume of the pod namespace/name, which must be Running.
func (c *cluster) volumeDir(t testing.TB, namespace, pod, volume string) string {
	t.Helper()
	ctx := context.Background()
	p, err := c.cs.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read pod %s/%s: %v", namespace, pod, err)
	}
	dir, err := c.kubelet.VolumeDir(ctx, p, volume)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitPodsRunning waits until every pod of namespace is Running.
func (c *cluster) waitPodsRunning(t testing.TB, namespace string, want int) []corev1.Pod {
	t.Helper()
	var pods *corev1.PodList
	c.waitFor(t, fmt.Sprintf("%d pods of namespace %s to run", want, namespace), 2*time.Minute, func() (bool, error) {
		var err error
		pods, err = c.cs.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == want && len(pods.Items) == want, fmt.Errorf("%d of %d Running; simulator: %s", running, len(pods.Items), c.kubelet.Errors())
	})
	return pods.Items
}

// deleteNamespace deletes namespace ns as the namespace controller would (kubeletsim.DeleteNamespace),
// failing the test at once when a server process died.
func (c *cluster) deleteNamespace(t testing.TB, ns string) {
	t.Helper()
	if err := kubeletsim.DeleteNamespace(context.Background(), c.cfg, ns, c.serversDied); err != nil {
		t.Fatal(err)
	}
}
