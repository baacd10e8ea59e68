// Command straddle-bench compares Straddle with restic on the same generated data on the same machine and
// prints a markdown table per data set: first backup, unchanged and changed incrementals, restore, bytes
// stored and peak memory. Every restore is verified byte for byte.
package main

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	straddle, restic string
	compression      string
	scale            float64
	sets             []string
	work, out        string
	keep             bool
}

func main() {
	var o options
	var sets string
	flag.StringVar(&o.straddle, "straddle", "bin/straddle", "path of the straddle binary")
	flag.StringVar(&o.restic, "restic", "restic", "path of the restic binary")
	flag.StringVar(&o.compression, "compression", "", "straddle's compression level (default: straddle's own default)")
	flag.Float64Var(&o.scale, "scale", 1, "scale of the data sets (0.1 for a quick run)")
	flag.StringVar(&sets, "sets", "small,mix", "data sets to run")
	flag.StringVar(&o.work, "work", "bench/out", "working directory for data and repositories")
	flag.StringVar(&o.out, "out", "", "also write the tables to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep repositories and restores")
	flag.Parse()
	o.sets = strings.Split(sets, ",")
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "straddle-bench: %v\n", err)
		os.Exit(1)
	}
}

// phase is one measured command.
type phase struct {
	seconds float64
	rssKiB  int64
}

// result is one tool's run over one data set.
type result struct {
	first, unchanged, changed, restore phase
	stored                             int64
	restored                           int64
}

func (r result) peakRSS() int64 {
	return max(r.first.rssKiB, r.unchanged.rssKiB, r.changed.rssKiB, r.restore.rssKiB)
}

func run(o options) error {
	for _, bin := range []*string{&o.straddle, &o.restic} {
		p, err := exec.LookPath(*bin)
		if err != nil {
			return fmt.Errorf("%s not found (make bench installs Debian's restic and builds straddle): %w", *bin, err)
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
		spec, ok := dataset.Specs[name]
		if !ok {
			return fmt.Errorf("unknown data set %q", name)
		}
		spec = spec.Scaled(o.scale)
		pristine, size, err := prepare(work, spec)
		if err != nil {
			return err
		}
		var res [2]result
		for i, t := range []tool{straddleTool(o.straddle, o.compression), resticTool(o.restic)} {
			logf("%s: %s", name, t.name)
			if res[i], err = measure(work, spec, pristine, t, o.keep); err != nil {
				return fmt.Errorf("%s on %s: %w", t.name, name, err)
			}
		}
		table(&report, spec, size, res[0], res[1])
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
	name    string
	env     []string
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
// time so that each tool finds its parent snapshot.
func measure(work string, spec dataset.Spec, pristine string, t tool, keep bool) (result, error) {
	var r result
	runDir := filepath.Join(work, "run")
	src := filepath.Join(runDir, "src")
	repo := filepath.Join(runDir, t.name+"-repo")
	target := filepath.Join(runDir, t.name+"-restore")
	_ = os.RemoveAll(runDir)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return r, err
	}
	if !keep {
		defer os.RemoveAll(runDir)
	}
	if err := exec.Command("cp", "-a", pristine, src).Run(); err != nil {
		return r, fmt.Errorf("copy data: %w", err)
	}
	if _, err := execute(t.env, t.init(repo)); err != nil {
		return r, err
	}
	var err error
	if r.first, err = execute(t.env, t.backup(repo, src)); err != nil {
		return r, err
	}
	if r.unchanged, err = execute(t.env, t.backup(repo, src)); err != nil {
		return r, err
	}
	if _, err := dataset.Mutate(src, spec, seed, 0.03); err != nil {
		return r, err
	}
	if r.changed, err = execute(t.env, t.backup(repo, src)); err != nil {
		return r, err
	}
	if r.restore, err = execute(t.env, t.restore(repo, target)); err != nil {
		return r, err
	}
	if r.restored, err = compareTrees(src, t.restored(target, src)); err != nil {
		return r, fmt.Errorf("restore differs from the data: %w", err)
	}
	r.stored, err = duBytes(repo)
	return r, err
}

// execute runs a command and returns its wall time and peak resident memory. Dirty pages of the phase before
// are flushed first (untimed), so no phase pays for another's writes.
func execute(env, args []string) (phase, error) {
	syscall.Sync()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stdout = io.Discard
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	p := phase{seconds: time.Since(start).Seconds()}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.rssKiB = ru.Maxrss
		}
	}
	if err != nil {
		return p, fmt.Errorf("%s: %w: %s", strings.Join(args[1:3], " "), err, strings.TrimSpace(stderr.String()))
	}
	logf("  %-40s %6.2f s  %5d MiB", strings.Join(args[1:min(4, len(args))], " "), p.seconds, p.rssKiB/1024)
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

func table(w io.Writer, spec dataset.Spec, size int64, s, r result) {
	mb := float64(size) / 1e6
	fmt.Fprintf(w, "### %s: %d files, %.0f MB (half log-like text, half random)\n\n", spec.Name, spec.Files, mb)
	fmt.Fprintln(w, "| | Straddle | restic | Straddle vs restic |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	rate := func(p phase, bytes int64) float64 { return float64(bytes) / 1e6 / p.seconds }
	fmt.Fprintf(w, "| first backup, MB/s | %.0f | %.0f | %.2f× faster |\n", rate(s.first, size), rate(r.first, size), r.first.seconds/s.first.seconds)
	fmt.Fprintf(w, "| unchanged incremental, s | %.2f | %.2f | %.2f× faster |\n", s.unchanged.seconds, r.unchanged.seconds, r.unchanged.seconds/s.unchanged.seconds)
	fmt.Fprintf(w, "| changed incremental (3%% of files), s | %.2f | %.2f | %.2f× faster |\n", s.changed.seconds, r.changed.seconds, r.changed.seconds/s.changed.seconds)
	fmt.Fprintf(w, "| restore, MB/s | %.0f | %.0f | %.2f× faster |\n", rate(s.restore, s.restored), rate(r.restore, r.restored), r.restore.seconds/s.restore.seconds)
	fmt.Fprintf(w, "| bytes stored, MB | %.1f | %.1f | %.3f× (lower is better) |\n", float64(s.stored)/1e6, float64(r.stored)/1e6, float64(s.stored)/float64(r.stored))
	fmt.Fprintf(w, "| peak RSS, MiB | %d | %d | %.2f× (lower is better) |\n\n", s.peakRSS()/1024, r.peakRSS()/1024, float64(s.peakRSS())/float64(r.peakRSS()))
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
