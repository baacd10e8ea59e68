// Command controller-bench measures the Straddle controller at scale: it starts a real kube-apiserver and etcd
// (envtest), creates nodes, namespaces, claims and Running pods, runs the real `straddle controller` process,
// creates one Backup and measures how long until every PodVolumeBackup exists, then marks them Completed as
// node-agents would and measures how long until the Backup ends, with the controller's API requests per volume
// and its peak memory. It prints a markdown table.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

type options struct {
	straddle, assets, crds string
	work, out              string
	load                   workload
	maxInFlight            int
	timeout                time.Duration
	extraArgs              []string
}

func main() {
	var o options
	var extra string
	flag.StringVar(&o.straddle, "straddle", "bin/straddle", "path of the straddle binary whose controller is measured")
	flag.StringVar(&o.assets, "assets", "bin", "folder of kube-apiserver and etcd")
	flag.StringVar(&o.crds, "crds", "deploy/crds", "folder of Straddle's CRDs")
	flag.IntVar(&o.load.nodes, "nodes", 50, "nodes")
	flag.IntVar(&o.load.pods, "pods", 1000, "pods, spread over the nodes and namespaces; each has three volumes to back up")
	flag.IntVar(&o.load.namespaces, "namespaces", 4, "namespaces of the pods")
	flag.IntVar(&o.maxInFlight, "max-volumes-in-flight", 0, "the controller's --max-volumes-in-flight (0: the number of volumes, so the cap holds nothing back)")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up after this long")
	flag.StringVar(&extra, "controller-args", "", "more flags for the controller, space-separated")
	flag.StringVar(&o.work, "work", "bench/out/controller", "working directory (kubeconfig, repositories, the controller's log)")
	flag.StringVar(&o.out, "out", "", "also write the table to this file")
	flag.Parse()
	o.extraArgs = strings.Fields(extra)
	// The benchmark's own cache would otherwise complain that nothing logs; its errors come back as values.
	log.SetLogger(logr.Discard())
	if o.maxInFlight == 0 {
		o.maxInFlight = o.load.volumes()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	err := run(ctx, o)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "controller-bench: %v\n", err)
		os.Exit(1)
	}
}

// result is what one run measured.
type result struct {
	setup                 time.Duration
	startup               counts
	toAllCreated, toEnd   time.Duration
	planCtl, finishCtl    counts
	planServer, finishSrv counts
	peakMiB, endMiB       float64
	// cpuPlan and cpuFinish are the controller's CPU seconds in each phase: unlike wall times, they hardly
	// depend on what else runs on the machine.
	cpuPlan, cpuFinish float64
	// marked is how long the benchmark took to mark every PodVolumeBackup Completed.
	marked             time.Duration
	loadStart, loadEnd string
	phase, version     string
}

func run(ctx context.Context, o options) error {
	if err := os.RemoveAll(o.work); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(o.work, "repositories"), 0o755); err != nil {
		return err
	}
	cp, err := startControlPlane(o.assets, o.crds, o.work)
	if err != nil {
		return err
	}
	defer cp.stop()
	repoDir, err := filepath.Abs(filepath.Join(o.work, "repositories"))
	if err != nil {
		return err
	}
	if err := cp.install(ctx, repoDir); err != nil {
		return err
	}
	var res result
	start := time.Now()
	if err := cp.create(ctx, o.load); err != nil {
		return err
	}
	res.setup = time.Since(start)
	fmt.Fprintf(os.Stderr, "created %d nodes, %d pods in %d namespaces in %s\n", o.load.nodes, o.load.pods, o.load.namespaces, res.setup.Round(time.Millisecond))

	ctl, err := startController(ctx, o, cp.kubeconfig)
	if err != nil {
		return err
	}
	defer ctl.stop()
	watched, err := cp.watch(ctx)
	if err != nil {
		return err
	}
	// Let the controller's start-up lists and its first reconciles (the storage location) settle, so the
	// counts below are the backup's own.
	time.Sleep(3 * time.Second)
	if res.startup, err = controllerRequests(ctx, ctl.metrics); err != nil {
		return err
	}
	srv0, err := apiServerRequests(ctx, cp.cfg)
	if err != nil {
		return err
	}
	pid := ctl.cmd.Process.Pid
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	res.loadStart = loadAverage()

	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: installNamespace, Name: "bench"},
		Spec: v1.BackupSpec{DefaultVolumesToFsBackup: ptr.To(true)}}
	start = time.Now()
	if err := cp.cl.Create(ctx, b); err != nil {
		return fmt.Errorf("create backup: %w", err)
	}
	if err := waitFor(ctx, "every PodVolumeBackup to exist", func() (bool, error) {
		n, err := countPVBs(ctx, watched, b.Name)
		return n >= o.load.volumes(), err
	}); err != nil {
		return err
	}
	res.toAllCreated = time.Since(start)
	ctl1, err := controllerRequests(ctx, ctl.metrics)
	if err != nil {
		return err
	}
	srv1, err := apiServerRequests(ctx, cp.cfg)
	if err != nil {
		return err
	}
	res.planCtl, res.planServer = ctl1.minus(res.startup), srv1.minus(srv0)
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	res.cpuPlan = cpu1 - cpu0
	fmt.Fprintf(os.Stderr, "every PodVolumeBackup exists after %s\n", res.toAllCreated.Round(time.Millisecond))

	start = time.Now()
	if err := cp.completeAll(ctx, watched, b.Name); err != nil {
		return err
	}
	res.marked = time.Since(start)
	if err := waitFor(ctx, "the backup to end", func() (bool, error) {
		var got v1.Backup
		if err := watched.Get(ctx, client.ObjectKeyFromObject(b), &got); err != nil {
			return false, err
		}
		res.phase = string(got.Status.Phase)
		return got.Status.CompletionTimestamp != nil, nil
	}); err != nil {
		return err
	}
	res.toEnd = time.Since(start)
	ctl2, err := controllerRequests(ctx, ctl.metrics)
	if err != nil {
		return err
	}
	srv2, err := apiServerRequests(ctx, cp.cfg)
	if err != nil {
		return err
	}
	res.finishCtl, res.finishSrv = ctl2.minus(ctl1), srv2.minus(srv1)
	cpu2, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	res.cpuFinish = cpu2 - cpu1
	res.loadEnd = loadAverage()
	if res.peakMiB, res.endMiB, err = memory(pid); err != nil {
		return err
	}
	res.version = straddleVersion(o.straddle)
	return report(o, res)
}

// watch starts an informer cache of the install namespace's PodVolumeBackups and Backups, so following the
// backup costs the API server one watch each, not a list per poll.
func (cp *controlPlane) watch(ctx context.Context) (client.Reader, error) {
	c, err := cache.New(cp.cfg, cache.Options{Scheme: cp.cl.Scheme(), DefaultNamespaces: map[string]cache.Config{installNamespace: {}}})
	if err != nil {
		return nil, err
	}
	for _, o := range []client.Object{&v1.PodVolumeBackup{}, &v1.Backup{}} {
		if _, err := c.GetInformer(ctx, o); err != nil {
			return nil, fmt.Errorf("watch %T: %w", o, err)
		}
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, errors.New("the benchmark's cache did not sync")
	}
	return c, nil
}

func countPVBs(ctx context.Context, r client.Reader, backup string) (int, error) {
	var list v1.PodVolumeBackupList
	if err := r.List(ctx, &list, client.MatchingLabels{v1.BackupLabel: backup}); err != nil {
		return 0, err
	}
	return len(list.Items), nil
}

// completeAll marks every PodVolumeBackup of the backup Completed, as its node-agent would after uploading.
func (cp *controlPlane) completeAll(ctx context.Context, r client.Reader, backup string) error {
	var list v1.PodVolumeBackupList
	if err := r.List(ctx, &list, client.MatchingLabels{v1.BackupLabel: backup}); err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(writers)
	for i := range list.Items {
		pvb := list.Items[i].DeepCopy()
		g.Go(func() error {
			now := metav1.Now()
			pvb.Status.Phase = v1.VolumePhaseCompleted
			pvb.Status.StartTimestamp, pvb.Status.CompletionTimestamp = &now, &now
			pvb.Status.SnapshotID = fmt.Sprintf("%064x", i+1)
			pvb.Status.Progress = v1.Progress{BytesDone: 1 << 20, BytesTotal: 1 << 20, FilesDone: 10, FilesTotal: 10}
			pvb.Status.Stats = v1.VolumeStats{BytesRead: 1 << 20, BytesAdded: 1 << 19}
			if err := cp.cl.Status().Update(ctx, pvb); err != nil {
				return fmt.Errorf("complete PodVolumeBackup %s: %w", pvb.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func waitFor(ctx context.Context, what string, done func() (bool, error)) error {
	for {
		ok, err := done()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// controllerProc is the running `straddle controller`.
type controllerProc struct {
	cmd     *exec.Cmd
	metrics string
	done    chan struct{}
}

func startController(ctx context.Context, o options, kubeconfig string) (*controllerProc, error) {
	metrics, probe := freeAddr(), freeAddr()
	if metrics == "" || probe == "" {
		return nil, errors.New("no free local port")
	}
	log, err := os.Create(filepath.Join(o.work, "controller.log"))
	if err != nil {
		return nil, err
	}
	args := append([]string{"controller", "--kubeconfig", kubeconfig, "--namespace", installNamespace,
		"--metrics-bind-address", metrics, "--health-probe-bind-address", probe,
		"--webhook-port", "0", "--backup-sync-period", "0", "--max-volumes-in-flight", fmt.Sprint(o.maxInFlight)}, o.extraArgs...)
	cmd := exec.Command(o.straddle, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s controller: %w", o.straddle, err)
	}
	p := &controllerProc{cmd: cmd, metrics: metrics, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); log.Close(); close(p.done) }()
	err = waitFor(ctx, "the controller to be ready", func() (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("the controller exited; see %s", log.Name())
		default:
		}
		resp, err := http.Get("http://" + probe + "/readyz")
		if err != nil {
			return false, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *controllerProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ""
	}
	defer l.Close()
	return l.Addr().String()
}

func straddleVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func report(o options, r result) error {
	vols := float64(o.load.volumes())
	var b strings.Builder
	fmt.Fprintf(&b, "### Controller at scale: %d pods on %d nodes in %d namespaces, %d volumes\n\n", o.load.pods, o.load.nodes, o.load.namespaces, o.load.volumes())
	fmt.Fprintf(&b, "Machine: %d CPUs, load average %s at the Backup's creation and %s at its end; %s; %s; controller --max-volumes-in-flight %d %s\n\n",
		runtime.NumCPU(), r.loadStart, r.loadEnd, r.version, time.Now().UTC().Format("2006-01-02 15:04 UTC"), o.maxInFlight, strings.Join(o.extraArgs, " "))
	fmt.Fprintf(&b, "| figure | measured | target |\n|---|---:|---|\n")
	fmt.Fprintf(&b, "| Backup created → every PodVolumeBackup exists, s | %.1f | ≤ 30 |\n", r.toAllCreated.Seconds())
	fmt.Fprintf(&b, "| controller API requests while planning, per volume | %.2f (%.0f) | bounded |\n", r.planCtl.total()/vols, r.planCtl.total())
	fmt.Fprintf(&b, "| controller CPU while planning, ms per volume | %.1f (%.1f s) | |\n", 1000*r.cpuPlan/vols, r.cpuPlan)
	fmt.Fprintf(&b, "| all PodVolumeBackups marked Completed → Backup %s, s | %.1f | |\n", r.phase, r.toEnd.Seconds())
	fmt.Fprintf(&b, "| (of which the benchmark marking them Completed, %d writers), s | %.1f | |\n", writers, r.marked.Seconds())
	fmt.Fprintf(&b, "| controller API requests while finishing, per volume | %.2f (%.0f) | bounded |\n", r.finishCtl.total()/vols, r.finishCtl.total())
	fmt.Fprintf(&b, "| controller CPU while finishing, ms per volume | %.1f (%.1f s) | |\n", 1000*r.cpuFinish/vols, r.cpuFinish)
	fmt.Fprintf(&b, "| controller peak RSS, MiB | %.0f | < 256 |\n", r.peakMiB)
	fmt.Fprintf(&b, "| controller RSS at the end, MiB | %.0f | |\n\n", r.endMiB)
	fmt.Fprintf(&b, "- controller requests at start-up (informers' lists and watches, the storage location): %.0f — %s\n", r.startup.total(), r.startup)
	fmt.Fprintf(&b, "- controller requests while planning, by method: %s\n", r.planCtl)
	fmt.Fprintf(&b, "- controller requests while finishing, by method: %s\n", r.finishCtl)
	fmt.Fprintf(&b, "- API server, every client, while planning (the benchmark only watches): %s\n", r.planServer)
	fmt.Fprintf(&b, "- API server, every client, while finishing (includes the benchmark's %d status updates): %s\n", o.load.volumes(), r.finishSrv)
	fmt.Fprintf(&b, "- set-up (nodes, claims, pods, pod phases by %d writers): %.1f s\n", writers, r.setup.Seconds())
	fmt.Print(b.String())
	if o.out == "" {
		return nil
	}
	return os.WriteFile(o.out, []byte(b.String()), 0o644)
}
