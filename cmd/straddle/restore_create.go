package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// restoreCreateOptions are the flags of `straddle restore create`.
type restoreCreateOptions struct {
	*backupFlags
	fromBackup        string
	includeNamespaces []string
	excludeNamespaces []string
	mappings          []string
	timeout           string
	wait              bool
}

func newRestoreCreateCmd(f *backupFlags) *cobra.Command {
	o := &restoreCreateOptions{backupFlags: f}
	cmd := &cobra.Command{
		Use:   "create [NAME] --from-backup BACKUP",
		Short: "Create a Restore of a backup's namespaces and pod volumes (and with --wait, watch it to the end)",
		Long: "Create a Restore of a backup's namespaces and pod volumes. NAME defaults to BACKUP-YYYYMMDDhhmmss.\n" +
			"The backup need not be an object in this cluster: the controller reads it from the storage location,\n" +
			"so a new cluster pointed at the same storage can restore it.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return o.run(cmd.Context(), name, time.Now(), cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.fromBackup, "from-backup", "", "the backup to restore (required)")
	fl.StringSliceVar(&o.includeNamespaces, "include-namespaces", nil, "backed-up namespaces to restore, comma-separated; * for all (default all)")
	fl.StringSliceVar(&o.excludeNamespaces, "exclude-namespaces", nil, "backed-up namespaces not to restore, comma-separated")
	fl.StringSliceVar(&o.mappings, "namespace-mappings", nil, "restore namespaces under other names, as src:dst pairs, comma-separated (a:b,c:d)")
	fl.StringVar(&o.timeout, "timeout", "", "fail the volumes not restored this long after the start, keeping those that were, such as 2h (default: the install's, 4h; 0: no bound)")
	fl.BoolVar(&o.wait, "wait", false, "wait until the restore ends, showing its progress; exit non-zero unless it Completed")
	return cmd
}

// restoreNameTimeFormat is the timestamp that makes a default restore name unique: YYYYMMDDhhmmss.
const restoreNameTimeFormat = "20060102150405"

// defaultRestoreName is `<backup>-<YYYYMMDDhhmmss>`, with the backup's name cut so the whole stays a valid
// label value (the controller labels the PodVolumeRestores with it).
func defaultRestoreName(backup string, now time.Time) string {
	stamp := now.UTC().Format(restoreNameTimeFormat)
	keep := validation.LabelValueMaxLength - len(stamp) - 1
	if len(backup) > keep {
		backup = strings.TrimRight(backup[:keep], "-.")
	}
	return backup + "-" + stamp
}

// validRestoreName checks a name the way the API server will, and also that it fits a label value.
func validRestoreName(name string) error {
	if len(validation.IsDNS1123Subdomain(name)) > 0 || len(name) > validation.LabelValueMaxLength {
		return fmt.Errorf("restore name %q is not valid: use at most 63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit", name)
	}
	return nil
}

// parseNamespaceMappings reads `src:dst` pairs into the spec's map: each side a namespace name, no source
// named twice (which target would win?).
func parseNamespaceMappings(pairs []string) (map[string]string, error) {
	mapping := map[string]string{}
	for _, pair := range pairs {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		src, dst, ok := strings.Cut(pair, ":")
		src, dst = strings.TrimSpace(src), strings.TrimSpace(dst)
		if !ok || src == "" || dst == "" {
			return nil, fmt.Errorf("--namespace-mappings: %q is not a src:dst pair such as voting:voting-copy", pair)
		}
		for _, ns := range []string{src, dst} {
			if len(validation.IsDNS1123Label(ns)) > 0 {
				return nil, fmt.Errorf("--namespace-mappings: %q in %q is not a namespace name (lowercase letters, digits and '-', at most 63)", ns, pair)
			}
		}
		if prev, dup := mapping[src]; dup {
			return nil, fmt.Errorf("--namespace-mappings: namespace %q is mapped twice, to %q and to %q", src, prev, dst)
		}
		mapping[src] = dst
	}
	if len(mapping) == 0 {
		return nil, nil
	}
	return mapping, nil
}

// spec checks the flags and turns them into a RestoreSpec, with one sentence for the first thing wrong.
func (o *restoreCreateOptions) spec() (v1.RestoreSpec, error) {
	if o.fromBackup == "" {
		return v1.RestoreSpec{}, errors.New("--from-backup is required: name the backup to restore (straddle backup get lists them)")
	}
	if err := validBackupName(o.fromBackup); err != nil {
		return v1.RestoreSpec{}, fmt.Errorf("--from-backup: %w", err)
	}
	spec := v1.RestoreSpec{BackupName: o.fromBackup}
	// Namespace lists are checked as backup create checks them: the same names, the same rules.
	sel := backupSpecFlags{includeNamespaces: o.includeNamespaces, excludeNamespaces: o.excludeNamespaces}
	bspec, err := sel.spec()
	if err != nil {
		return v1.RestoreSpec{}, err
	}
	spec.IncludedNamespaces, spec.ExcludedNamespaces = bspec.IncludedNamespaces, bspec.ExcludedNamespaces
	if spec.NamespaceMapping, err = parseNamespaceMappings(o.mappings); err != nil {
		return v1.RestoreSpec{}, err
	}
	if spec.Timeout, err = parseTimeout(o.timeout); err != nil {
		return v1.RestoreSpec{}, err
	}
	for src := range spec.NamespaceMapping {
		if !namespaceSelected(&spec, src) {
			return v1.RestoreSpec{}, fmt.Errorf("--namespace-mappings maps namespace %q, which --include-namespaces/--exclude-namespaces leave out", src)
		}
	}
	return spec, nil
}

// namespaceSelected says whether the spec's namespace lists restore namespace ns.
func namespaceSelected(spec *v1.RestoreSpec, ns string) bool {
	for _, ex := range spec.ExcludedNamespaces {
		if ex == ns || ex == "*" {
			return false
		}
	}
	if len(spec.IncludedNamespaces) == 0 {
		return true
	}
	for _, in := range spec.IncludedNamespaces {
		if in == ns || in == "*" {
			return true
		}
	}
	return false
}

func (o *restoreCreateOptions) run(ctx context.Context, name string, now time.Time, out io.Writer) error {
	spec, err := o.spec()
	if err != nil {
		return err
	}
	if name == "" {
		name = defaultRestoreName(spec.BackupName, now)
	}
	if err := validRestoreName(name); err != nil {
		return err
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	inCluster, err := checkRestorableBackup(ctx, cl, o.namespace, spec.BackupName)
	if err != nil {
		return err
	}
	r := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.namespace}, Spec: spec}
	switch err := cl.Create(ctx, r); {
	case apierrors.IsAlreadyExists(err):
		return fmt.Errorf("restore %q already exists in namespace %s; pick another name, or leave it out for a new one", name, o.namespace)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("create restore %q: namespace %s not found; is Straddle installed there (straddle install -n %s)?", name, o.namespace, o.namespace)
	case err != nil:
		return fmt.Errorf("create restore %s/%s: %w", o.namespace, name, installHint(err))
	}
	fmt.Fprintf(out, "Restore %q created from backup %q. See: straddle restore describe %s\n", name, spec.BackupName, name)
	if !inCluster {
		// Said so that a mistyped name is noticed now rather than when the controller fails to find it.
		fmt.Fprintf(out, "Backup %q is not in this cluster: the controller reads it from the storage location.\n", spec.BackupName)
	}
	if !o.wait {
		return nil
	}
	w := &restoreWaiter{client: cl, namespace: o.namespace, name: name, clock: clock.RealClock{}, interval: time.Second, view: newRestoreWaitView(out)}
	return w.wait(ctx)
}

// checkRestorableBackup refuses a backup this cluster knows is not (yet) restorable, and says whether the
// cluster holds it. A backup that is not here at all is fine: a new cluster has no Backup objects, and the
// controller reads the backup from storage.
func checkRestorableBackup(ctx context.Context, cl client.Client, namespace, name string) (inCluster bool, err error) {
	b, err := getBackup(ctx, cl, namespace, name)
	if errors.As(err, new(*backupNotFoundError)) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	switch phase := phaseOf(b); phase {
	case v1.PhaseCompleted, v1.PhasePartiallyFailed:
		return true, nil
	case v1.PhaseFailed, v1.PhaseDeleting:
		return true, fmt.Errorf("backup %q is %s, so there is nothing to restore from it (straddle backup describe %s says why)", name, phase, name)
	default:
		return true, fmt.Errorf("backup %q is %s, not Completed or PartiallyFailed: restore it once it has ended (straddle backup describe %s shows its progress)", name, phase, name)
	}
}
