package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// counts are request counters by a key (a method, or a verb and resource).
type counts map[string]float64

func (c counts) total() float64 {
	t := 0.0
	for _, v := range c {
		t += v
	}
	return t
}

// minus is what was counted since before.
func (c counts) minus(before counts) counts {
	out := counts{}
	for k, v := range c {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// String lists the counts, largest first.
func (c counts) String() string {
	keys := slices.Collect(maps.Keys(c))
	slices.SortFunc(keys, func(a, b string) int {
		if c[a] != c[b] {
			if c[a] > c[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, c[k]))
	}
	return strings.Join(parts, ", ")
}

// controllerRequests reads the controller's own count of the requests its client-go clients sent
// (rest_client_requests_total, which controller-runtime registers), by HTTP method. It counts every client in
// the process: the manager's, the event recorder's, the resource collector's.
func controllerRequests(ctx context.Context, metricsAddr string) (counts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the controller's metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseCounter(resp.Body, "rest_client_requests_total", "method")
}

// apiServerRequests reads the API server's count of the requests it served (apiserver_request_total), by
// verb and resource, from every client.
func apiServerRequests(ctx context.Context, cfg *rest.Config) (counts, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	body, err := dc.RESTClient().Get().AbsPath("/metrics").Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the API server's metrics: %w", err)
	}
	defer body.Close()
	return parseCounter(body, "apiserver_request_total", "verb", "resource", "subresource")
}

// parseCounter sums a counter of the Prometheus text format by the values of the labels keys.
func parseCounter(r io.Reader, name string, keys ...string) (counts, error) {
	out := counts{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		end := strings.LastIndex(line, "}")
		if end < 0 {
			continue
		}
		labels := parseLabels(line[len(name)+1 : end])
		v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		var key []string
		for _, k := range keys {
			if labels[k] != "" {
				key = append(key, labels[k])
			}
		}
		out[strings.Join(key, " ")] += v
	}
	return out, sc.Err()
}

// parseLabels reads k="v",… (values here hold no escaped quotes).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		eq := strings.Index(s, `="`)
		if eq < 0 {
			break
		}
		k := s[:eq]
		rest := s[eq+2:]
		q := strings.Index(rest, `"`)
		if q < 0 {
			break
		}
		out[k] = rest[:q]
		s = strings.TrimPrefix(rest[q+1:], ",")
	}
	return out
}

// memory reads a process's peak and current resident set from /proc, in MiB.
func memory(pid int) (peak, now float64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read the controller's memory: %w", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kib, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmHWM:":
			peak = kib / 1024
		case "VmRSS:":
			now = kib / 1024
		}
	}
	return peak, now, nil
}

// cpuSeconds is the user and system CPU time a process has used (/proc/<pid>/stat, in clock ticks of 1/100 s).
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read the controller's CPU time: %w", err)
	}
	// The command name in parentheses may hold spaces; the fields after it are fixed.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100, nil
}

// loadAverage is the machine's one-minute load average, to show how shared the machine was.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(data))[0]
}
