//go:build integration

package controller

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// maxRequestsPerVolume bounds the API requests the Backup reconciler sends per volume over a whole backup
// (bench/RESULTS.md, "Controller at scale", has the figures at 3,000 volumes). Per volume: one create, its
// VolumeQueued event, the VolumeCompleted and VolumeBackedUp events; then, as often as the work queue does not
// fold the wake-ups of volumes that end, a status update of the Backup and, while the cap still holds volumes
// back, two lists of the backup's own PodVolumeBackups. Folded (measured here: 4.3) or not at all (6.6), a
// backup stays under this; a read or list per volume more does not.
const maxRequestsPerVolume = 7

// maxReadsPerBackup bounds the requests for pods, claims and namespaces of a whole backup: they come from the
// cache, so a read per pod or per volume shows here however the wake-ups fold.
const maxReadsPerBackup = 10

// TestBackupRequestsPerVolume fails when a backup's API requests grow faster than its volumes: a GET per volume
// instead of the cache, a list per volume, or a status update per event would each push it over.
func TestBackupRequestsPerVolume(t *testing.T) {
	const pods, perPod = 100, 3
	e := newEnv(t, nil, nil)
	counter := &requestCounter{counts: map[string]int{}}
	cfg := rest.CopyConfig(restConfig)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return counter.wrap(rt) })
	e.stop()
	e.managerConfig = cfg
	e.stop = e.startController(nil)

	ns := e.namespace("scale")
	for i := range pods {
		e.pod(newPod(ns, fmt.Sprintf("app-%03d", i)).pvc("data", fmt.Sprintf("data-%03d", i)).emptyDir("logs", "scratch"))
	}
	counter.reset()
	e.backup("scale", v1.BackupSpec{IncludedNamespaces: []string{ns}, DefaultVolumesToFsBackup: ptr.To(true)})
	// Node-agents finish volumes one at a time as the default cap lets them start: the worst case for a
	// reconciler that wrote per change or listed per reconcile. Counts, not times, are what this test checks:
	// the wait is long for a busy machine.
	done := map[string]bool{}
	waitLong(t, "the backup to complete", func() bool {
		for _, pvb := range e.pvbs("scale") {
			if !done[pvb.Name] {
				e.setPVB(pvb.Name, v1.VolumePhaseCompleted, v1.Progress{BytesDone: 1, BytesTotal: 1}, strings.Repeat("a", 64), "")
				done[pvb.Name] = true
			}
		}
		return e.get("scale").Status.Phase == v1.PhaseCompleted
	}, func() string {
		return fmt.Sprintf("%d volumes done, backup status %+v", len(done), e.get("scale").Status)
	})
	if len(done) != pods*perPod {
		t.Fatalf("%d PodVolumeBackups, want %d", len(done), pods*perPod)
	}

	total, byKind := counter.snapshot()
	perVolume := float64(total) / float64(pods*perPod)
	t.Logf("%d requests for %d volumes (%.2f per volume): %s", total, pods*perPod, perVolume, byKind)
	if perVolume > maxRequestsPerVolume {
		t.Errorf("the backup sent %.2f API requests per volume, more than %d: %s", perVolume, maxRequestsPerVolume, byKind)
	}
	if got := counter.get("POST podvolumebackups"); got != pods*perPod {
		t.Errorf("%d creates of PodVolumeBackups for %d volumes", got, pods*perPod)
	}
	for _, k := range []string{"GET pods", "GET persistentvolumeclaims", "GET namespaces"} {
		if got := counter.get(k); got > maxReadsPerBackup {
			t.Errorf("%s: %d requests, more than %d: not from the cache", k, got, maxReadsPerBackup)
		}
	}
}

func waitLong(t *testing.T, what string, ok func() bool, state func() string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s: %s", what, state())
}

// requestCounter counts the requests a client sends, by method and resource.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *requestCounter) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		c.mu.Lock()
		c.counts[req.Method+" "+resourceOf(req.URL.Path)]++
		c.mu.Unlock()
		return next.RoundTrip(req)
	})
}

func (c *requestCounter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[key]
}

func (c *requestCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.counts)
}

func (c *requestCounter) snapshot() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c.counts)) {
		total += c.counts[k]
		parts = append(parts, fmt.Sprintf("%s %d", k, c.counts[k]))
	}
	return total, strings.Join(parts, ", ")
}

// resourceOf names the resource of an API path (/apis/g/v/namespaces/ns/r/name/sub → r/sub), so counts group
// by what was asked for, not by object.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) > 0 && parts[0] == "apis" && len(parts) > 3 {
		parts = parts[3:]
	} else if len(parts) > 0 && parts[0] == "api" && len(parts) > 2 {
		parts = parts[2:]
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return path
	case 3:
		return parts[0] + "/" + parts[2]
	}
	return parts[0]
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
