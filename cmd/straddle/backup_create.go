package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// backupCreateOptions are the flags of `straddle backup create`.
type backupCreateOptions struct {
	*backupFlags
	backupSpecFlags
	wait bool
}

func newBackupCreateCmd(f *backupFlags) *cobra.Command {
	o := &backupCreateOptions{backupFlags: f}
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a Backup of the selected pods' volumes (and with --wait, watch it to the end)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	o.backupSpecFlags.register(cmd.Flags())
	cmd.Flags().BoolVar(&o.wait, "wait", false, "wait until the backup ends, showing its progress; exit non-zero unless it Completed")
	return cmd
}

// backupSpecFlags choose what a Backup backs up and where it is kept: `backup create` and `schedule create`
// (for its Backups' template) share them.
type backupSpecFlags struct {
	includeNamespaces []string
	excludeNamespaces []string
	selector          string
	ttl               string
	timeout           string
	// defaultVolumes is nil unless the flag was given, so an unset flag leaves the install's default.
	defaultVolumes  *bool
	storageLocation string
}

func (o *backupSpecFlags) register(fl *pflag.FlagSet) {
	fl.StringSliceVar(&o.includeNamespaces, "include-namespaces", nil, "namespaces to back up, comma-separated; * for all (default all)")
	fl.StringSliceVar(&o.excludeNamespaces, "exclude-namespaces", nil, "namespaces not to back up, comma-separated")
	fl.StringVarP(&o.selector, "selector", "l", "", "back up only the pods matching this label selector, such as app=web,tier in (db,cache)")
	fl.StringVar(&o.ttl, "ttl", "", "how long to keep each backup, such as 72h or 30d (default 720h)")
	fl.StringVar(&o.timeout, "timeout", "", "fail the volumes not backed up this long after the start, keeping those that were, such as 2h (default: the install's, 4h; 0: no bound)")
	fl.Var(optionalBool{&o.defaultVolumes}, "default-volumes-to-fs-backup", "back up every pod volume not excluded by annotation (default: the install's setting)")
	fl.Lookup("default-volumes-to-fs-backup").NoOptDefVal = "true"
	fl.StringVar(&o.storageLocation, "storage-location", "", "BackupStorageLocation to store the backups in (default: the default location)")
}

// optionalBool is a boolean flag that stays nil unless given.
type optionalBool struct{ v **bool }

func (b optionalBool) String() string {
	if b.v == nil || *b.v == nil {
		return ""
	}
	return strconv.FormatBool(**b.v)
}

func (b optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false: %w", err)
	}
	*b.v = &v
	return nil
}

func (b optionalBool) Type() string { return "bool" }

// spec checks the flags and turns them into a BackupSpec, with one sentence for the first thing wrong.
func (o *backupSpecFlags) spec() (v1.BackupSpec, error) {
	spec := v1.BackupSpec{DefaultVolumesToFsBackup: o.defaultVolumes, StorageLocation: o.storageLocation}
	for _, set := range []struct {
		flag  string
		names []string
		dst   *[]string
	}{{"--include-namespaces", o.includeNamespaces, &spec.IncludedNamespaces}, {"--exclude-namespaces", o.excludeNamespaces, &spec.ExcludedNamespaces}} {
		for _, ns := range set.names {
			ns = strings.TrimSpace(ns)
			if ns == "" {
				continue
			}
			if ns != "*" && len(validation.IsDNS1123Label(ns)) > 0 {
				return v1.BackupSpec{}, fmt.Errorf("%s: %q is not a namespace name (lowercase letters, digits and '-', at most 63) nor *", set.flag, ns)
			}
			*set.dst = append(*set.dst, ns)
		}
	}
	var err error
	if o.selector != "" {
		sel, err := metav1.ParseToLabelSelector(o.selector)
		if err != nil {
			return v1.BackupSpec{}, fmt.Errorf("--selector %q is not a label selector (such as app=web,tier in (db,cache)): %w", o.selector, err)
		}
		spec.LabelSelector = sel
	}
	if o.ttl != "" {
		ttl, err := parseTTL(o.ttl)
		if err != nil {
			return v1.BackupSpec{}, err
		}
		spec.TTL = &metav1.Duration{Duration: ttl}
	}
	if spec.Timeout, err = parseTimeout(o.timeout); err != nil {
		return v1.BackupSpec{}, err
	}
	if o.storageLocation != "" && len(validation.IsDNS1123Subdomain(o.storageLocation)) > 0 {
		return v1.BackupSpec{}, fmt.Errorf("--storage-location %q is not a valid object name", o.storageLocation)
	}
	return spec, nil
}

// parseTimeout reads --timeout: empty leaves the install's default (nil), 0 means no bound.
func parseTimeout(s string) (*metav1.Duration, error) {
	if s == "" {
		return nil, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return nil, fmt.Errorf("--timeout %q is not a duration such as 4h or 90m (0 for no bound)", s)
	}
	return &metav1.Duration{Duration: d}, nil
}

// parseTTL reads a positive Go duration, and also whole days ("30d"), which is how people say retention.
func parseTTL(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
		if n > 100*365 {
			err = errors.New("too long")
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--ttl %q is not a positive duration such as 72h, 90m or 30d", s)
	}
	return d, nil
}

// validBackupName checks a name the way the API server will, and also that it fits a label value: the
// controller labels the backup's PodVolumeBackups with it.
func validBackupName(name string) error {
	if len(validation.IsDNS1123Subdomain(name)) > 0 || len(name) > validation.LabelValueMaxLength {
		return fmt.Errorf("backup name %q is not valid: use at most 63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit", name)
	}
	return nil
}

func (o *backupCreateOptions) run(ctx context.Context, name string, out io.Writer) error {
	if err := validBackupName(name); err != nil {
		return err
	}
	spec, err := o.spec()
	if err != nil {
		return err
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	if err := checkStorageLocation(ctx, cl, o.namespace, o.storageLocation); err != nil {
		return err
	}
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.namespace}, Spec: spec}
	switch err := cl.Create(ctx, b); {
	case apierrors.IsAlreadyExists(err):
		return fmt.Errorf("backup %q already exists in namespace %s; pick another name, or delete it first", name, o.namespace)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("create backup %q: namespace %s not found; is Straddle installed there (straddle install -n %s)?", name, o.namespace, o.namespace)
	case err != nil:
		return fmt.Errorf("create backup %s/%s: %w", o.namespace, name, installHint(err))
	}
	fmt.Fprintf(out, "Backup %q created. See: straddle backup describe %s\n", name, name)
	if !o.wait {
		return nil
	}
	w := &backupWaiter{client: cl, namespace: o.namespace, name: name, clock: clock.RealClock{}, interval: time.Second, view: newWaitView(out)}
	return w.wait(ctx)
}

// checkStorageLocation fails early on a location that does not exist, rather than leaving the user to find
// a Failed backup later. An unnamed location is the controller's to choose.
func checkStorageLocation(ctx context.Context, cl client.Client, namespace, name string) error {
	if name == "" {
		return nil
	}
	var loc v1.BackupStorageLocation
	err := cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &loc)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("storage location %q not found in namespace %s (kubectl -n %s get backupstoragelocations lists them)", name, namespace, namespace)
	}
	if err != nil {
		return fmt.Errorf("read storage location %s/%s: %w", namespace, name, err)
	}
	return nil
}

// newWaitView picks the live view on a terminal and plain lines anywhere else (pipes, CI logs).
func newWaitView(out io.Writer) waitView {
	if f, ok := out.(*os.File); ok && isTerminal(f) {
		return &liveView{w: out, size: func() (int, int, error) { return term.GetSize(int(f.Fd())) }}
	}
	return &lineView{w: out, every: 10 * time.Second}
}
