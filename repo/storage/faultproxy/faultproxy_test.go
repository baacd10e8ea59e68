package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// origin serves PUT and GET of objects in memory and records the Host header it saw.
type origin struct {
	mu      sync.Mutex
	objects map[string][]byte
	hosts   []string
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hosts = append(o.hosts, r.Host)
	switch r.Method {
	case http.MethodPut:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		o.objects[r.URL.Path] = b
	case http.MethodGet, http.MethodHead:
		b, ok := o.objects[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Origin", "yes")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	}
}

func start(t *testing.T, opts Options) (*Proxy, *origin) {
	t.Helper()
	o := &origin{objects: map[string][]byte{}}
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	opts.Target = srv.URL
	p, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, o
}

// client has its own transport so a reset connection is never reused by another test.
func client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

var payload = bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB

func put(t *testing.T, c *http.Client, url string, body []byte) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	return c.Do(req)
}

func TestForwardsFaithfullyWithoutFaults(t *testing.T) {
	p, o := start(t, Options{})
	c := client(10 * time.Second)
	resp, err := put(t, c, p.URL()+"/bucket/obj", payload)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("put: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, p.URL()+"/bucket/obj", nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, payload[100:200]) || resp.Header.Get("X-Origin") != "yes" {
		t.Fatalf("ranged get: %d %q %v", resp.StatusCode, got, err)
	}
	// The origin sees the Host the client used (S3 signatures cover it).
	if o.hosts[0] != p.Addr() {
		t.Fatalf("origin saw Host %q, want %q", o.hosts[0], p.Addr())
	}
	if p.Requests() != 2 || p.TotalInjected() != 0 {
		t.Fatalf("%d requests, %d faults", p.Requests(), p.TotalInjected())
	}
}

func TestEachFault(t *testing.T) {
	for _, c := range []struct {
		kind  Kind
		check func(t *testing.T, resp *http.Response, err error, body []byte, readErr error)
	}{
		{InternalError, func(t *testing.T, resp *http.Response, err error, body []byte, _ error) {
			if err != nil || resp.StatusCode != 500 || !strings.Contains(string(body), "<Code>InternalError</Code>") {
				t.Fatalf("%v %v %s", resp, err, body)
			}
		}},
		{SlowDown, func(t *testing.T, resp *http.Response, err error, body []byte, _ error) {
			if err != nil || resp.StatusCode != 503 || !strings.Contains(string(body), "<Code>SlowDown</Code>") {
				t.Fatalf("%v %v %s", resp, err, body)
			}
		}},
		{Reset, func(t *testing.T, resp *http.Response, err error, body []byte, readErr error) {
			if err == nil {
				err = readErr
			}
			if !errors.Is(err, syscall.ECONNRESET) || len(body) >= len(payload) {
				t.Fatalf("got %d bytes, err %v; want a reset part way", len(body), err)
			}
		}},
		{Truncate, func(t *testing.T, resp *http.Response, err error, body []byte, readErr error) {
			if err != nil || !errors.Is(readErr, io.ErrUnexpectedEOF) || len(body) >= len(payload) {
				t.Fatalf("got %d bytes, err %v / %v; want a short body", len(body), err, readErr)
			}
		}},
		{Stall, func(t *testing.T, resp *http.Response, err error, _ []byte, _ error) {
			if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
				t.Fatalf("err = %v, want the client's timeout", err)
			}
		}},
		{BodyStall, func(t *testing.T, resp *http.Response, err error, body []byte, readErr error) {
			if ne, ok := errors.AsType[net.Error](readErr); err != nil || !ok || !ne.Timeout() || len(body) >= len(payload) {
				t.Fatalf("got %d bytes, err %v / %v; want the client's timeout part way", len(body), err, readErr)
			}
		}},
	} {
		t.Run(c.kind.String(), func(t *testing.T) {
			p, o := start(t, Options{Rate: 1, Seed: 5, Kinds: []Kind{c.kind}, StallFor: 3 * time.Second,
				Match: func(r *http.Request) bool { return r.Method == http.MethodGet }})
			o.objects["/bucket/obj"] = payload
			resp, err := client(300 * time.Millisecond).Get(p.URL() + "/bucket/obj")
			var body []byte
			var readErr error
			if err == nil {
				body, readErr = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			c.check(t, resp, err, body, readErr)
			if p.Injected(c.kind) != 1 || p.TotalInjected() != 1 {
				t.Fatalf("counted %d of %s, %d in all", p.Injected(c.kind), c.kind, p.TotalInjected())
			}
		})
	}
}

func TestFaultsOnResponsesWithoutBody(t *testing.T) {
	for _, kind := range []Kind{Reset, Truncate} {
		t.Run(kind.String(), func(t *testing.T) {
			p, o := start(t, Options{Rate: 1, Kinds: []Kind{kind}})
			_, err := put(t, client(5*time.Second), p.URL()+"/bucket/new", payload)
			if err == nil {
				t.Fatal("a dropped answer to a PUT succeeded")
			}
			// The origin got the PUT: it is the response that was lost.
			o.mu.Lock()
			defer o.mu.Unlock()
			if !bytes.Equal(o.objects["/bucket/new"], payload) {
				t.Fatal("the PUT did not reach the origin")
			}
		})
	}
}

func TestStallEndsByItself(t *testing.T) {
	p, o := start(t, Options{Rate: 1, Kinds: []Kind{Stall, BodyStall}, StallFor: 200 * time.Millisecond})
	o.objects["/b/o"] = payload
	for range 4 {
		resp, err := client(10 * time.Second).Get(p.URL() + "/b/o")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("after a stall: %d bytes, %v", len(got), err)
		}
	}
}

func TestRateIsSeeded(t *testing.T) {
	run := func() string {
		p, o := start(t, Options{Rate: 0.3, Seed: 9, Kinds: []Kind{InternalError, SlowDown}})
		o.objects["/b/o"] = []byte("x")
		var codes []int
		c := client(5 * time.Second)
		for range 200 {
			resp, err := c.Get(p.URL() + "/b/o")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
		}
		if n := p.TotalInjected(); n < 35 || n > 85 {
			t.Fatalf("%d faults in 200 requests at rate 0.3", n)
		}
		return fmt.Sprint(codes)
	}
	if first, second := run(), run(); first != second {
		t.Fatal("two proxies with one seed answered differently")
	}
}

func TestSetRateAndClose(t *testing.T) {
	p, o := start(t, Options{Rate: 1, Kinds: []Kind{InternalError}})
	o.objects["/b/o"] = []byte("x")
	p.SetRate(0)
	resp, err := client(5 * time.Second).Get(p.URL() + "/b/o")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("rate 0: %v %v", resp, err)
	}
	resp.Body.Close()
	// Close ends a stall in progress instead of waiting it out.
	p, _ = start(t, Options{Rate: 1, Kinds: []Kind{Stall}, StallFor: time.Hour})
	go func() { _, _ = client(time.Hour).Get(p.URL() + "/b/o") }()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closed := make(chan error)
	go func() { closed <- p.Close() }()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close waited for a stall")
	}
	if _, err := Start(Options{Target: "not a url"}); err == nil {
		t.Fatal("Start accepted a bad target")
	}
	if _, err := Start(Options{Target: "http://127.0.0.1:1", Rate: 2}); err == nil {
		t.Fatal("Start accepted rate 2")
	}
}
