// Command straddle-bench compares Straddle with restic on the same generated data on the same machine and
// prints a markdown table per data set and storage: first backup, unchanged and changed incrementals, restore,
// bytes stored and peak memory. Every restore is verified byte for byte.
//
// Storage is a local directory (-storage dir) or a MinIO server on 127.0.0.1 (-storage minio) that the
// harness starts from -minio over a fresh data directory in the work directory for each tool's run, and stops
// when the run ends, fails or is interrupted.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/straddle-io/straddle/bench/dataset"
)

const (
	seed     = 2026
	password = "bench-password"
)

type options struct {
	straddle, restic, minio string
	compression             string
	scale                   float64
	sets, storages          []string
	runs                    int
	work, out               string
	keep, prepareOnly       bool
}

func main() {
	var o options
	var sets string
	flag.StringVar(&o.straddle, "straddle", "bin/straddle", "path of the straddle binary")
	flag.StringVar(&o.restic, "restic", "restic", "path of the restic binary")
	flag.StringVar(&o.compression, "compression", "", "straddle's compression level (default: straddle's own default)")
	flag.Float64Var(&o.scale, "scale", 1, "scale of the data sets (0.1 for a quick run)")
	flag.StringVar(&sets, "sets", "small,mix", "data sets to run (small, mix, files1m), and scale rows: index (10M blobs), snapshots (2,000)")
	var storages string
	flag.StringVar(&storages, "storage", "dir", "where the repositories live: dir (a local directory), minio (a MinIO server on 127.0.0.1), or both: dir,minio")
	flag.StringVar(&o.minio, "minio", "bin/minio", "path of the minio binary, for -storage minio")
	flag.IntVar(&o.runs, "runs", 1, "runs of each tool, interleaved (straddle, restic, straddle, …); every figure is the median")
	flag.StringVar(&o.work, "work", "bench/out", "working directory for data and repositories")
	flag.StringVar(&o.out, "out", "", "also write the tables to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep repositories and restores")
	flag.BoolVar(&o.prepareOnly, "prepare", false, "only generate the data sets (kept in the work directory for later runs), measure nothing")
	flag.Parse()
	o.sets = strings.Split(sets, ",")
	o.storages = strings.Split(storages, ",")
	// An interrupt cancels the running command; the deferred clean-ups then stop MinIO and remove the run.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "straddle-bench: %v\n", err)
		os.Exit(1)
	}
}

// phase is one measured command.
type phase struct {
	seconds float64
	rssKiB  int64
	// cpu is the tool's user and system CPU time; serverCPU is the MinIO server's during the phase (zero for
	// a directory).
	cpu, serverCPU float64
}

// result is one tool's run over one data set.
type result struct {
	first, unchanged, changed, restore phase
	stored                             int64
	restored                           int64
}

// median takes the median of every figure over runs on its own (the upper one of an even count).
func median(runs []result) result {
	phases := func(get func(r *result) *phase) phase {
		var ps []phase
		for i := range runs {
			ps = append(ps, *get(&runs[i]))
		}
		return phase{
			seconds:   mid(ps, func(p phase) float64 { return p.seconds }),
			rssKiB:    mid(ps, func(p phase) int64 { return p.rssKiB }),
			cpu:       mid(ps, func(p phase) float64 { return p.cpu }),
			serverCPU: mid(ps, func(p phase) float64 { return p.serverCPU }),
		}
	}
	return result{
		first:     phases(func(r *result) *phase { return &r.first }),
		unchanged: phases(func(r *result) *phase { return &r.unchanged }),
		changed:   phases(func(r *result) *phase { return &r.changed }),
		restore:   phases(func(r *result) *phase { return &r.restore }),
		stored:    mid(runs, func(r result) int64 { return r.stored }),
		restored:  mid(runs, func(r result) int64 { return r.restored }),
	}
}

func mid[T any, V cmp.Ordered](xs []T, f func(T) V) V {
	vs := make([]V, len(xs))
	for i, x := range xs {
		vs[i] = f(x)
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

func (r result) serverCPU() float64 {
	return r.first.serverCPU + r.unchanged.serverCPU + r.changed.serverCPU + r.restore.serverCPU
}

func (r result) peakRSS() int64 {
	return max(r.first.rssKiB, r.unchanged.rssKiB, r.changed.rssKiB, r.restore.rssKiB)
}

func run(ctx context.Context, o options) error {
	bins := []*string{&o.straddle, &o.restic}
	for _, st := range o.storages {
		switch st {
		case "dir":
		case "minio":
			bins = append(bins, &o.minio)
		default:
			return fmt.Errorf("unknown storage %q (dir or minio)", st)
		}
	}
	for _, bin := range bins {
		p, err := exec.LookPath(*bin)
		if err != nil {
			return fmt.Errorf("%s not found (make bench installs Debian's restic, builds straddle and links bin/minio): %w", *bin, err)
		}
		*bin, _ = filepath.Abs(p)
	}
	work, err := filepath.Abs(o.work)
	if err != nil {
		return err
	}
	var report bytes.Buffer
	fmt.Fprintf(&report, "Machine: %d CPUs, %s; %s; %s; scale %g; straddle compression %q, restic compression auto.\n\n",
		runtime.NumCPU(), memTotal(), version(o.straddle, "--version"), version(o.restic, "version"), o.scale, cmp.Or(o.compression, "fastest"))
	for _, name := range o.sets {
		if row, ok := scaleRows[name]; ok {
			if o.prepareOnly {
				continue
			}
			logf("%s", name)
			if err := row(ctx, &report, o, work); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			continue
		}
		spec, ok := dataset.Specs[name]
		if !ok {
			return fmt.Errorf("unknown data set %q (data sets: small, mix, files1m; scale rows: index, snapshots)", name)
		}
		spec = spec.Scaled(o.scale)
		pristine, size, err := prepare(work, spec)
		if err != nil {
			return err
		}
		if o.prepareOnly {
			continue
		}
		for _, st := range o.storages {
			var res [2][]result
			for run := range max(o.runs, 1) {
				for i, t := range []tool{straddleTool(o.straddle, o.compression), resticTool(o.restic)} {
					logf("%s on %s: %s, run %d of %d", name, st, t.name, run+1, max(o.runs, 1))
					r, err := measure(ctx, work, spec, pristine, t, st, o.minio, o.keep)
					if err != nil {
						return fmt.Errorf("%s on %s (%s): %w", t.name, name, st, err)
					}
					res[i] = append(res[i], r)
				}
			}
			table(&report, spec, st, size, len(res[0]), median(res[0]), median(res[1]))
		}
	}
	os.Stdout.Write(report.Bytes())
	if o.out != "" {
		return os.WriteFile(o.out, report.Bytes(), 0o644)
	}
	return nil
}

// prepare generates the pristine first generation once per set and scale; runs copy it.
func prepare(work string, spec dataset.Spec) (string, int64, error) {
	dir := filepath.Join(work, "data", fmt.Sprintf("%s-%d-%d-%d", spec.Name, spec.Files, spec.MaxSize, seed))
	stamp := filepath.Join(dir, ".complete")
	if b, err := os.ReadFile(stamp); err == nil {
		var size int64
		if _, err := fmt.Sscan(string(b), &size); err == nil {
			return filepath.Join(dir, "gen1"), size, nil
		}
	}
	logf("generating %s (%d files)", spec.Name, spec.Files)
	_ = os.RemoveAll(dir)
	size, err := dataset.Generate(filepath.Join(dir, "gen1"), spec, seed)
	if err != nil {
		return "", 0, err
	}
	return filepath.Join(dir, "gen1"), size, os.WriteFile(stamp, []byte(fmt.Sprint(size)), 0o644)
}

// tool knows how to drive one backup program.
type tool struct {
	name string
	env  []string
	// s3URL is the tool's repository location for an S3 endpoint (host:port), bucket and prefix over http.
	s3URL   func(endpoint, bucket, prefix string) string
	init    func(repo string) []string
	backup  func(repo, src string) []string
	restore func(repo, target string) []string
	// restored is where a restore of src ends up under target.
	restored func(target, src string) string
}

func straddleTool(bin, compression string) tool {
	return tool{
		name: "straddle",
		env:  []string{"STRADDLE_PASSWORD=" + password},
		s3URL: func(endpoint, bucket, prefix string) string {
			return "s3+http://" + endpoint + "/" + bucket + "/" + prefix
		},
		init: func(repo string) []string {
			args := []string{bin, "repo", "init", "--repo", repo}
			if compression != "" {
				args = append(args, "--compression", compression)
			}
			return args
		},
		backup: func(repo, src string) []string {
			return []string{bin, "repo", "backup", src, "--repo", repo, "--host", "bench", "--json"}
		},
		restore: func(repo, target string) []string {
			return []string{bin, "repo", "restore", "latest", "--repo", repo, "--target", target}
		},
		restored: func(target, _ string) string { return target },
	}
}

func resticTool(bin string) tool {
	return tool{
		name: "restic",
		env:  []string{"RESTIC_PASSWORD=" + password, "RESTIC_CACHE_DIR=" + filepath.Join(os.TempDir(), "straddle-bench-restic-cache")},
		s3URL: func(endpoint, bucket, prefix string) string {
			return "s3:http://" + endpoint + "/" + bucket + "/" + prefix
		},
		init: func(repo string) []string { return []string{bin, "-r", repo, "init", "-q"} },
		backup: func(repo, src string) []string {
			return []string{bin, "-r", repo, "backup", "-q", "--host", "bench", src}
		},
		restore: func(repo, target string) []string {
			return []string{bin, "-r", repo, "restore", "latest", "-q", "--target", target}
		},
		restored: func(target, src string) string { return filepath.Join(target, src) },
	}
}

// measure runs one tool through the phases on a fresh copy of the data, from the same absolute path each
// time so that each tool finds its parent snapshot, against a fresh repository in a directory or on a fresh
// MinIO server.
func measure(ctx context.Context, work string, spec dataset.Spec, pristine string, t tool, storage, minioBin string, keep bool) (result, error) {
	var r result
	runDir := filepath.Join(work, "run")
	src := filepath.Join(runDir, "src")
	target := filepath.Join(runDir, t.name+"-restore")
	_ = os.RemoveAll(runDir)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return r, err
	}
	if !keep {
		defer os.RemoveAll(runDir)
	}
	if err := exec.CommandContext(ctx, "cp", "-a", pristine, src).Run(); err != nil {
		return r, fmt.Errorf("copy data: %w", err)
	}

	var (
		repo   string
		env    = t.env
		stored func() (int64, error)
		server *minioServer
	)
	switch storage {
	case "minio":
		var err error
		server, err = startMinio(ctx, minioBin, filepath.Join(runDir, "minio"))
		if err != nil {
			return r, err
		}
		defer server.stop()
		const bucket = "bench"
		repo = t.s3URL(server.endpoint, bucket, t.name)
		env = append(append([]string(nil), env...), server.env()...)
		stored = func() (int64, error) { return server.objectBytes(ctx, bucket, t.name+"/") }
	default:
		repo = filepath.Join(runDir, t.name+"-repo")
		stored = func() (int64, error) { return duBytes(repo) }
	}

	if _, err := execute(ctx, env, t.init(repo), server); err != nil {
		return r, err
	}
	var err error
	if r.first, err = execute(ctx, env, t.backup(repo, src), server); err != nil {
		return r, err
	}
	if r.unchanged, err = execute(ctx, env, t.backup(repo, src), server); err != nil {
		return r, err
	}
	if _, err := dataset.Mutate(src, spec, seed, spec.Changed()); err != nil {
		return r, err
	}
	if r.changed, err = execute(ctx, env, t.backup(repo, src), server); err != nil {
		return r, err
	}
	if r.restore, err = execute(ctx, env, t.restore(repo, target), server); err != nil {
		return r, err
	}
	if r.restored, err = compareTrees(src, t.restored(target, src)); err != nil {
		return r, fmt.Errorf("restore differs from the data: %w", err)
	}
	r.stored, err = stored()
	return r, err
}

// execute runs a command and returns its wall time, peak resident memory and CPU time, and the server's CPU
// time meanwhile when there is a server. Dirty pages of the phase before are flushed first (untimed), so no
// phase pays for another's writes.
func execute(ctx context.Context, env, args []string, server *minioServer) (phase, error) {
	syscall.Sync()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // not left running if the harness dies
	var stderr bytes.Buffer
	cmd.Stdout = io.Discard
	cmd.Stderr = &stderr
	serverBefore := server.cpuSeconds()
	start := time.Now()
	err := cmd.Run()
	p := phase{seconds: time.Since(start).Seconds(), serverCPU: server.cpuSeconds() - serverBefore}
	if ps := cmd.ProcessState; ps != nil {
		p.cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			p.rssKiB = ru.Maxrss
		}
	}
	if err != nil {
		return p, fmt.Errorf("%s: %w: %s", strings.Join(args[1:3], " "), err, strings.TrimSpace(stderr.String()))
	}
	line := fmt.Sprintf("  %-40s %6.2f s  %5d MiB  cpu %6.2f s", strings.Join(args[1:min(4, len(args))], " "), p.seconds, p.rssKiB/1024, p.cpu)
	if server != nil {
		line += fmt.Sprintf("  minio cpu %6.2f s", p.serverCPU)
	}
	logf("%s", line)
	return p, nil
}

// compareTrees checks that every regular file under want has the same content under got, and that got has
// nothing more; it returns the bytes compared.
func compareTrees(want, got string) (int64, error) {
	var total int64
	seen := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		a, err := fileDigest(p)
		if err != nil {
			return err
		}
		b, err := fileDigest(filepath.Join(got, rel))
		if err != nil {
			return err
		}
		if a != b {
			return fmt.Errorf("%s differs", rel)
		}
		fi, _ := d.Info()
		total += fi.Size()
		seen++
		return nil
	})
	if err != nil {
		return 0, err
	}
	extra := -seen
	_ = filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			extra++
		}
		return nil
	})
	if extra != 0 {
		return 0, fmt.Errorf("the restore holds %d files more than the data", extra)
	}
	return total, nil
}

func fileDigest(p string) ([32]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	var out [32]byte
	h.Sum(out[:0])
	return out, nil
}

func duBytes(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			total += fi.Size()
		}
		return err
	})
	return total, err
}

func table(w io.Writer, spec dataset.Spec, storage string, size int64, runs int, s, r result) {
	mb := float64(size) / 1e6
	where := ""
	if storage == "minio" {
		where = ", against MinIO on 127.0.0.1"
	}
	if runs > 1 {
		where += fmt.Sprintf(", median of %d interleaved runs", runs)
	}
	fmt.Fprintf(w, "### %s: %d files, %.0f MB (half log-like text, half random)%s\n\n", spec.Name, spec.Files, mb, where)
	fmt.Fprintln(w, "| | Straddle | restic | Straddle vs restic |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	rate := func(p phase, bytes int64) float64 { return float64(bytes) / 1e6 / p.seconds }
	fmt.Fprintf(w, "| first backup, MB/s | %.0f | %.0f | %.2f× faster |\n", rate(s.first, size), rate(r.first, size), r.first.seconds/s.first.seconds)
	fmt.Fprintf(w, "| unchanged incremental, s | %.2f | %.2f | %.2f× faster |\n", s.unchanged.seconds, r.unchanged.seconds, r.unchanged.seconds/s.unchanged.seconds)
	fmt.Fprintf(w, "| changed incremental (%g%% of files), s | %.2f | %.2f | %.2f× faster |\n", spec.Changed()*100, s.changed.seconds, r.changed.seconds, r.changed.seconds/s.changed.seconds)
	fmt.Fprintf(w, "| restore, MB/s | %.0f | %.0f | %.2f× faster |\n", rate(s.restore, s.restored), rate(r.restore, r.restored), r.restore.seconds/s.restore.seconds)
	fmt.Fprintf(w, "| bytes stored, MB | %.1f | %.1f | %.3f× (lower is better) |\n", float64(s.stored)/1e6, float64(r.stored)/1e6, float64(s.stored)/float64(r.stored))
	fmt.Fprintf(w, "| peak RSS, MiB | %d | %d | %.2f× (lower is better) |\n", s.peakRSS()/1024, r.peakRSS()/1024, float64(s.peakRSS())/float64(r.peakRSS()))
	for _, p := range []struct {
		name string
		s, r phase
	}{{"first backup", s.first, r.first}, {"unchanged incremental", s.unchanged, r.unchanged}, {"changed incremental", s.changed, r.changed}, {"restore", s.restore, r.restore}} {
		fmt.Fprintf(w, "| peak RSS of the %s, MiB | %d | %d | %.2f× (lower is better) |\n", p.name, p.s.rssKiB/1024, p.r.rssKiB/1024, float64(p.s.rssKiB)/float64(p.r.rssKiB))
	}
	fmt.Fprintf(w, "| CPU time (user+system) of first / unchanged / changed / restore, s | %.1f / %.1f / %.1f / %.1f | %.1f / %.1f / %.1f / %.1f | |\n",
		s.first.cpu, s.unchanged.cpu, s.changed.cpu, s.restore.cpu, r.first.cpu, r.unchanged.cpu, r.changed.cpu, r.restore.cpu)
	if storage == "minio" {
		fmt.Fprintf(w, "| MinIO's CPU over the four phases, s | %.1f | %.1f | %.2f× (lower is better) |\n", s.serverCPU(), r.serverCPU(), s.serverCPU()/r.serverCPU())
	}
	fmt.Fprintln(w)
}

func version(bin string, arg string) string {
	out, err := exec.Command(bin, arg).Output()
	if err != nil {
		return filepath.Base(bin)
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown memory"
	}
	var kib int64
	if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kib); err != nil {
		return "unknown memory"
	}
	return fmt.Sprintf("%.0f GiB", float64(kib)/(1<<20))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
