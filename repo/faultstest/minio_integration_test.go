//go:build integration

package faultstest

import (
	"context"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/storage/faultproxy"
	"github.com/straddle-io/straddle/repo/storage/retry"
	"github.com/straddle-io/straddle/repo/storage/s3"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
	"github.com/straddle-io/straddle/repo/storage/storagetest"
)

// minioStorage is the real stack: the retry wrapper over the S3 backend, whose requests go through the fault
// proxy to a MinIO server. The S3 backend's no-progress timeout is short so that stalls cost seconds.
func minioStorage(t *testing.T, srv *miniotest.Server, seed uint64, ro retry.Options) (Storage, *faultproxy.Proxy) {
	t.Helper()
	proxy, err := faultproxy.Start(faultproxy.Options{Target: "http://" + srv.Endpoint, Seed: seed, StallFor: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	opts := srv.Options(srv.NewBucket(t), "repo")
	opts.Endpoint = proxy.Addr()
	opts.Timeout = 2 * time.Second
	be, err := s3.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := retry.New(be, ro)
	if err != nil {
		t.Fatal(err)
	}
	return Storage{Backend: rb, SetRate: proxy.SetRate, Injected: proxy.TotalInjected}, proxy
}

// survivingBudget retries long enough that one request in ten failing never exhausts it.
var survivingBudget = retry.Options{MaxAttempts: 10, MaxElapsed: time.Minute, InitialBackoff: 5 * time.Millisecond,
	MaxBackoff: 100 * time.Millisecond, RequestTimeout: 3 * time.Second, StallTimeout: 2 * time.Second}

func TestMinIOSurvivesTenPercentFaults(t *testing.T) {
	srv := miniotest.Start(t)
	s, proxy := minioStorage(t, srv, 4, survivingBudget)
	SurvivesFaults(t, s, 0.1)
	for _, k := range faultproxy.AllKinds {
		t.Logf("%s: %d", k, proxy.Injected(k))
	}
}

func TestMinIODownFailsCleanly(t *testing.T) {
	srv := miniotest.Start(t)
	s, _ := minioStorage(t, srv, 2, retry.Options{MaxAttempts: 3, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		RequestTimeout: 3 * time.Second, StallTimeout: 2 * time.Second})
	FailsCleanly(t, s, 2*time.Minute)
}

func TestMinIOConformanceUnderFaults(t *testing.T) {
	srv := miniotest.Start(t)
	s, proxy := minioStorage(t, srv, 3, survivingBudget)
	s.SetRate(0.1)
	storagetest.Run(t, s.Backend)
	if proxy.TotalInjected() == 0 || s.Backend.Retries() == 0 {
		t.Fatalf("%d faults injected, %d retries: the suite ran without faults", proxy.TotalInjected(), s.Backend.Retries())
	}
	t.Logf("%d of %d requests faulted, %d retries", proxy.TotalInjected(), proxy.Requests(), s.Backend.Retries())
}
