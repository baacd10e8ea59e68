// Package grafana holds the Grafana dashboard of Straddle's metrics; its test keeps the dashboard and
// docs/metrics.md true to the metrics the servers register.
package grafana

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/straddle-io/straddle/controller"
	nodeagent "github.com/straddle-io/straddle/node-agent"
)

// names records the metric names of the collectors registered with it.
type names struct {
	set map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (n *names) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			n.set[m[1]] = true
		}
	}
	return nil
}

func (n *names) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = n.Register(c)
	}
}

func (n *names) Unregister(prometheus.Collector) bool { return false }

// registered is every metric the controller and the node-agent register.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	n := &names{set: map[string]bool{}}
	if _, err := controller.NewMetrics(n); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeagent.NewMetrics(n); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeagent.NewMaintenanceMetrics(n); err != nil {
		t.Fatal(err)
	}
	if len(n.set) < 20 {
		t.Fatalf("only %d metrics registered: %v", len(n.set), n.set)
	}
	return n.set
}

var metricName = regexp.MustCompile(`straddle_[a-z0-9_]+`)

// exists reports whether name is a registered metric or one of a histogram's series.
func exists(reg map[string]bool, name string) bool {
	if reg[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && reg[base] {
			return true
		}
	}
	return false
}

func isPrefix(reg map[string]bool, prefix string) bool {
	for name := range reg {
		if strings.HasPrefix(name, prefix) && name != prefix && strings.HasSuffix(prefix, "_") {
			return true
		}
	}
	return false
}

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// Every metric the dashboard queries exists, and every registered metric is on it: the dashboard cannot
// drift from the code.
func TestDashboardQueriesRegisteredMetrics(t *testing.T) {
	reg := registered(t)
	data, err := os.ReadFile("straddle.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("straddle.json is not a dashboard: %v", err)
	}
	queried := map[string]bool{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q queries no straddle metric: %s", p.Title, tg.Expr)
			}
			for _, n := range names {
				if !exists(reg, n) {
					t.Errorf("panel %q queries %s, which no server registers", p.Title, n)
				}
				queried[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	for name := range reg {
		if !queried[name] {
			t.Errorf("%s is on no panel of the dashboard", name)
		}
	}
}

// docs/metrics.md lists every registered metric in its table, and no other.
func TestMetricsDocListsRegisteredMetrics(t *testing.T) {
	reg := registered(t)
	data, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.HasPrefix(line, "| `straddle_") {
			name := strings.Trim(strings.TrimSpace(strings.Split(line, "|")[1]), "`")
			documented[name] = true
		}
	}
	for _, n := range metricName.FindAllString(string(data), -1) {
		// Prose names families by their prefix ("straddle_controller_…").
		if !exists(reg, n) && !isPrefix(reg, n) {
			t.Errorf("docs/metrics.md names %s, which no server registers", n)
		}
	}
	var missing []string
	for name := range reg {
		if !documented[name] {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("docs/metrics.md has no table row for %v", missing)
	}
}
