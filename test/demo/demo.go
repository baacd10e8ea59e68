package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/straddle-io/straddle/test/kubeletsim"
)

// options are the demo's flags.
type options struct {
	straddle, restoreHelper, assets, minio string
	storage                                string
}

// validate makes the paths absolute and checks every binary is there, naming the make target that builds it.
func (o *options) validate() error {
	if o.storage != "filesystem" && o.storage != "minio" {
		return fmt.Errorf("-storage %q: want filesystem or minio", o.storage)
	}
	tools := []struct {
		path   *string
		target string
	}{
		{&o.straddle, "make build"}, {&o.restoreHelper, "make build"},
	}
	if o.storage == "minio" {
		tools = append(tools, struct {
			path   *string
			target string
		}{&o.minio, "make bin/minio"})
	}
	var errs []error
	for _, t := range tools {
		abs, err := filepath.Abs(*t.path)
		if err != nil {
			return fmt.Errorf("path %s: %w", *t.path, err)
		}
		*t.path = abs
		if fi, err := os.Stat(abs); err != nil || fi.IsDir() {
			errs = append(errs, fmt.Errorf("no %s: run %s", abs, t.target))
		}
	}
	abs, err := filepath.Abs(o.assets)
	if err != nil {
		return fmt.Errorf("path %s: %w", o.assets, err)
	}
	o.assets = abs
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(abs, bin)); err != nil {
			errs = append(errs, fmt.Errorf("no %s in %s: run make bin/%s", bin, abs, bin))
		}
	}
	return errors.Join(errs...)
}

// demo is one run: the local cluster, what was measured, and what must be stopped and removed at the end.
type demo struct {
	opts options
	out  *os.File // the children's output goes here too, so straddle sees a terminal when the demo has one
	dir  string   // everything the demo writes: kubeconfig, storage, the nodes' pods dirs, logs, copies

	env        *envtest.Environment
	cfg        *rest.Config
	kubeconfig string
	cl         client.Client
	cs         kubernetes.Interface
	procs      procs
	kubelet    *kubeletsim.Kubelet

	// original holds copies of the volumes as written, by volume ("db-0/data"), taken before the backup.
	original map[string]string
	phases   []phase
}

// phase is a step of the demo and how long it took.
type phase struct {
	name string
	took time.Duration
}

// run runs the demo to the end, printing to out, and returns the first failed check.
func run(ctx context.Context, o options, out *os.File) (err error) {
	if err := o.validate(); err != nil {
		return fmt.Errorf("check \"tools are built\": %w", err)
	}
	dir, err := os.MkdirTemp("", "straddle-demo-")
	if err != nil {
		return fmt.Errorf("make the demo's folder: %w", err)
	}
	d := &demo{opts: o, out: out, dir: dir, original: map[string]string{}}
	defer d.cleanup()
	defer func() {
		// After Ctrl-C the logs are no news: the user stopped it.
		if err != nil && ctx.Err() == nil {
			d.printLogs()
		}
	}()
	start := time.Now()
	for _, step := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"start the control plane", d.startCluster},
		{"deploy the app", d.deployVoting},
		{"back up", d.backup},
		{"delete the namespace", d.deleteNamespace},
		{"restore", d.restore},
		{"verify", d.verify},
	} {
		began := time.Now()
		if err := step.run(ctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted during %q: %w", step.name, err)
			}
			return err
		}
		d.phases = append(d.phases, phase{step.name, time.Since(began)})
	}
	return d.summary(ctx, time.Since(start))
}

// check wraps the error of a failed check with the check's name, which the demo's last line shows.
func check(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("check %q: %w", name, err)
}

// cleanup stops every child process and the control plane and removes the demo's folder.
func (d *demo) cleanup() {
	if d.kubelet != nil {
		d.kubelet.Stop()
	}
	d.procs.terminate()
	if d.env != nil {
		_ = d.env.Stop()
	}
	// The volumes' copies keep their modes; a folder without write permission would stop RemoveAll.
	_ = filepath.WalkDir(d.dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	if err := os.RemoveAll(d.dir); err != nil {
		fmt.Fprintf(os.Stderr, "remove %s: %v\n", d.dir, err)
	}
}

// printLogs shows the end of every process's log after a failure, before cleanup removes them.
func (d *demo) printLogs() {
	for _, p := range d.procs {
		fmt.Fprintf(os.Stderr, "\n===== last lines of %s =====\n%s\n", p.name, p.tail(30))
	}
	if d.kubelet != nil {
		if errs := d.kubelet.Errors(); errs != "" {
			fmt.Fprintf(os.Stderr, "\n===== kubelet simulator =====\n%s", errs)
		}
	}
}

// Output: a section title per step, and each command as a user types it, then its output.

func (d *demo) section(title string) {
	fmt.Fprintf(d.out, "\n%s== %s%s\n", bold(d.out), title, reset(d.out))
}

// command prints a command line as a user would type it.
func (d *demo) command(line string) {
	fmt.Fprintf(d.out, "%s$ %s%s\n", bold(d.out), line, reset(d.out))
}

// note prints an explanation of what the local cluster does differently from a real one.
func (d *demo) note(format string, args ...any) {
	fmt.Fprintf(d.out, "# "+format+"\n", args...)
}

// straddle prints `straddle args` and runs it against the local control plane, its output going to the
// demo's output as it comes.
func (d *demo) straddle(ctx context.Context, timeout time.Duration, args ...string) error {
	d.command("straddle " + strings.Join(args, " "))
	limited, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(limited, d.opts.straddle, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+d.kubeconfig)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("straddle %s: %w", strings.Join(args, " "), ctx.Err())
	case limited.Err() != nil:
		return fmt.Errorf("straddle %s did not end within %v: %w", strings.Join(args, " "), timeout, err)
	}
	return fmt.Errorf("straddle %s: %w", strings.Join(args, " "), err)
}

func bold(f *os.File) string  { return ifTerminal(f, "\033[1m") }
func reset(f *os.File) string { return ifTerminal(f, "\033[0m") }

func ifTerminal(f *os.File, code string) string {
	if term.IsTerminal(int(f.Fd())) {
		return code
	}
	return ""
}
