// Package faultproxy is an HTTP reverse proxy for tests that stands between a client and an object store (a
// MinIO server) and, for a seeded random share of requests, misbehaves the way networks and stores do: 500 and
// 503 SlowDown answers, connections reset or closed part way through a body, answers held back past the
// client's timeout. It is a real TCP listener, so the client's whole HTTP stack is exercised.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is a kind of fault.
type Kind int

// The faults.
const (
	// InternalError answers 500 with an S3 InternalError document, without forwarding.
	InternalError Kind = iota
	// SlowDown answers 503 with an S3 SlowDown document, without forwarding.
	SlowDown
	// Reset forwards, sends part of the response body and resets the connection (TCP RST). A response
	// without a body (HEAD, PUT) is reset before it is sent, after the origin handled the request.
	Reset
	// Truncate forwards and sends a body shorter than its Content-Length, then closes the connection; a
	// response without a body is dropped the same way.
	Truncate
	// Stall holds the request for StallFor before forwarding it, or until the client gives up.
	Stall
	// BodyStall forwards, sends part of the body and then holds the rest for StallFor, or until the client
	// gives up.
	BodyStall
	numKinds
)

var kindNames = [...]string{"internal-error", "slow-down", "reset", "truncate", "stall", "body-stall"}

func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// AllKinds are every fault, the default of Options.Kinds.
var AllKinds = []Kind{InternalError, SlowDown, Reset, Truncate, Stall, BodyStall}

// Options configure a proxy.
type Options struct {
	// Target is the origin's base URL, such as http://127.0.0.1:9000.
	Target string
	// Rate is the probability, 0..1, that a request gets a fault.
	Rate float64
	// Seed makes the sequence of faults repeatable.
	Seed uint64
	// Kinds are chosen from uniformly; nil means AllKinds.
	Kinds []Kind
	// StallFor is how long a stall lasts at most, so it ends by itself; default 5 s.
	StallFor time.Duration
	// Match, when set, limits faults to the requests it accepts; others are always forwarded.
	Match func(*http.Request) bool
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	opts      Options
	target    *url.URL
	transport *http.Transport
	ln        net.Listener
	srv       *http.Server
	done      chan struct{}

	mu   sync.Mutex
	rng  *rand.Rand
	rate float64

	requests atomic.Uint64
	injected [numKinds]atomic.Uint64
}

// Start listens on 127.0.0.1 on a free port and serves until Close.
func Start(opts Options) (*Proxy, error) {
	target, err := url.Parse(opts.Target)
	if err != nil || target.Scheme != "http" || target.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q is not an http://host:port URL", opts.Target)
	}
	if opts.Rate < 0 || opts.Rate > 1 {
		return nil, fmt.Errorf("faultproxy: rate %v outside 0..1", opts.Rate)
	}
	if opts.Kinds == nil {
		opts.Kinds = AllKinds
	}
	for _, k := range opts.Kinds {
		if k < 0 || k >= numKinds {
			return nil, fmt.Errorf("faultproxy: unknown fault %v", k)
		}
	}
	if opts.StallFor <= 0 {
		opts.StallFor = 5 * time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{
		opts: opts, target: target, ln: ln, done: make(chan struct{}), rate: opts.Rate,
		rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x6a09e667f3bcc908)),
		// Its own transport: no proxy from the environment, and bodies passed through byte for byte.
		transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 5 * time.Minute},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: time.Minute}
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln)
	}()
	return p, nil
}

// URL is the proxy's base URL.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetRate changes the fault rate, e.g. to set a repository up before breaking its storage.
func (p *Proxy) SetRate(rate float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate = rate
}

// Requests returns how many requests the proxy received.
func (p *Proxy) Requests() uint64 { return p.requests.Load() }

// Injected returns how many faults of kind were injected.
func (p *Proxy) Injected(k Kind) uint64 { return p.injected[k].Load() }

// TotalInjected returns how many faults were injected.
func (p *Proxy) TotalInjected() uint64 {
	var n uint64
	for i := range p.injected {
		n += p.injected[i].Load()
	}
	return n
}

// Close stops the proxy, cutting requests in progress (stalls included).
func (p *Proxy) Close() error {
	err := p.srv.Close()
	<-p.done
	p.transport.CloseIdleConnections()
	return err
}

// decide draws whether r gets a fault, which, and a random number for where it strikes.
func (p *Proxy) decide(r *http.Request) (k Kind, x uint64, ok bool) {
	if p.opts.Match != nil && !p.opts.Match(r) {
		return 0, 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate <= 0 || p.rng.Float64() >= p.rate || len(p.opts.Kinds) == 0 {
		return 0, 0, false
	}
	k = p.opts.Kinds[p.rng.IntN(len(p.opts.Kinds))]
	p.injected[k].Add(1)
	return k, p.rng.Uint64(), true
}

// ServeHTTP forwards r, injecting the fault drawn for it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	k, x, faulty := p.decide(r)
	if faulty {
		switch k {
		case InternalError:
			p.errorResponse(w, r, http.StatusInternalServerError, "InternalError", "We encountered an internal error, please try again.")
			return
		case SlowDown:
			p.errorResponse(w, r, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
			return
		case Stall:
			if !p.hold(r) {
				return
			}
			faulty = false
		}
	}
	resp, err := p.forward(r)
	if err != nil {
		http.Error(w, "faultproxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for key, vs := range resp.Header {
		if !hopByHop[http.CanonicalHeaderKey(key)] {
			h[key] = vs
		}
	}
	if !faulty {
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	bodyLen := resp.ContentLength
	if r.Method == http.MethodHead {
		bodyLen = 0
	}
	if bodyLen == 0 {
		// Nothing to cut: drop the connection before the answer, so the client does not learn the outcome.
		p.drop(w, k == Reset)
		return
	}
	if bodyLen < 0 {
		bodyLen = 4096 // unknown length: cut somewhere in the first few KiB
	}
	cut := int64(x % uint64(bodyLen))
	w.WriteHeader(resp.StatusCode)
	if _, err := io.CopyN(w, resp.Body, cut); err != nil {
		return
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	switch k {
	case Reset, Truncate:
		p.drop(w, k == Reset)
	case BodyStall:
		if p.hold(r) {
			_, _ = io.Copy(w, resp.Body)
		}
	}
}

// hold waits for StallFor; it returns false if the client went away first.
func (p *Proxy) hold(r *http.Request) bool {
	t := time.NewTimer(p.opts.StallFor)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// drop closes the client's connection, with a TCP reset when reset is set.
func (p *Proxy) drop(w http.ResponseWriter, reset bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return // HTTP/2: the server ends a short response by resetting the stream
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0) // close sends RST instead of FIN
	}
	_ = conn.Close()
}

// errorResponse answers like S3 does, after reading the request body so the client is not cut off mid-upload.
func (p *Proxy) errorResponse(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<30))
	body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>faultproxy</RequestId></Error>`,
		code, msg, r.URL.Path)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// hopByHop are the headers that belong to one connection and are not forwarded.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// forward sends r to the target. The Host header is kept as the client sent it: S3 signatures cover it.
func (p *Proxy) forward(r *http.Request) (*http.Response, error) {
	u := *p.target
	u.Path = r.URL.Path
	u.RawPath = r.URL.RawPath
	u.RawQuery = r.URL.RawQuery
	body := r.Body
	if r.ContentLength == 0 {
		body = http.NoBody
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), body)
	if err != nil {
		return nil, err
	}
	out.ContentLength = r.ContentLength
	out.Host = r.Host
	for key, vs := range r.Header {
		if !hopByHop[http.CanonicalHeaderKey(key)] {
			out.Header[key] = vs
		}
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("origin closed the connection: %w", err)
		}
		return nil, err
	}
	return resp, nil
}
