package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
)

func newRepositoryPasswordCmd() *cobra.Command {
	f := &backupFlags{}
	cmd := &cobra.Command{
		Use:   "repository-password",
		Short: "Manage the password that seals the repositories of the cluster's storage locations",
	}
	f.register(cmd)
	cmd.AddCommand(newPasswordRotateCmd(f))
	return cmd
}

// passwordRotateOptions are the flags of `straddle repository-password rotate`.
type passwordRotateOptions struct {
	*backupFlags
	newPasswordFile string
	location        string
	timeout         time.Duration
	// interval is how often the locations' status is read while waiting.
	interval time.Duration
}

func newPasswordRotateCmd(f *backupFlags) *cobra.Command {
	o := &passwordRotateOptions{backupFlags: f, interval: time.Second}
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the repository password: the controller adds the new password's key to every repository, switches the Secret, then removes the old key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.newPasswordFile, "new-password-file", "", "`file` with the new password (default: a random one, kept in the Secret, with a line on how to save it)")
	cmd.Flags().StringVar(&o.location, "storage-location", "", "rotate only the password Secret of this storage location (and of the locations sharing it); default: every location's")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 15*time.Minute, "how long to wait for the controller to finish")
	return cmd
}

// passwordGroup is one password Secret (and key) and the storage locations that use it: they are rotated
// together, since the Secret changes for all of them.
type passwordGroup struct {
	secret, key string
	locations   []string
	request     string
}

func (g *passwordGroup) String() string {
	return fmt.Sprintf("Secret %s (storage locations %s)", g.secret, strings.Join(g.locations, ", "))
}

func (o *passwordRotateOptions) run(ctx context.Context, out io.Writer) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	var given []byte
	if o.newPasswordFile != "" {
		b, err := os.ReadFile(o.newPasswordFile)
		if err != nil {
			return fmt.Errorf("read the new password file: %w", err)
		}
		// Files written by editors and echo end in a newline that is not part of the password.
		if given = bytes.TrimRight(b, "\r\n"); len(given) == 0 {
			return fmt.Errorf("new password file %s is empty", o.newPasswordFile)
		}
	}
	groups, err := passwordGroups(ctx, cl, o.namespace, o.location)
	if err != nil {
		return err
	}
	generated := false
	for _, g := range groups {
		gen, err := o.request(ctx, cl, g, given)
		if err != nil {
			return err
		}
		generated = generated || gen
	}
	for _, g := range groups {
		fmt.Fprintf(out, "rotating the repository password of %s\n", g)
	}
	if err := o.wait(ctx, cl, groups, out); err != nil {
		return err
	}
	what := "the new repository password is"
	if generated {
		what = "generated a random new repository password"
	}
	for _, g := range groups {
		fmt.Fprintln(out, passwordAdvice(what, o.namespace, g.secret, g.key))
	}
	return nil
}

// passwordGroups finds the password Secrets to rotate: the named location's, or every location's, each with
// every location that uses it.
func passwordGroups(ctx context.Context, cl client.Client, namespace, only string) ([]*passwordGroup, error) {
	var locs v1.BackupStorageLocationList
	if err := cl.List(ctx, &locs, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list the storage locations in namespace %s: %w", namespace, err)
	}
	var groups []*passwordGroup
	var onlyRef *passwordGroup
	for i := range locs.Items {
		loc := &locs.Items[i]
		name, key, err := bsl.PasswordSecretRef(loc)
		if err != nil {
			if loc.Name == only {
				return nil, err
			}
			continue
		}
		i := slices.IndexFunc(groups, func(g *passwordGroup) bool { return g.secret == name && g.key == key })
		if i < 0 {
			groups = append(groups, &passwordGroup{secret: name, key: key})
			i = len(groups) - 1
		}
		groups[i].locations = append(groups[i].locations, loc.Name)
		if loc.Name == only {
			onlyRef = groups[i]
		}
	}
	switch {
	case only != "" && onlyRef == nil:
		return nil, fmt.Errorf("there is no storage location %s in namespace %s", only, namespace)
	case only != "":
		return []*passwordGroup{onlyRef}, nil
	case len(groups) == 0:
		return nil, fmt.Errorf("no storage location in namespace %s names a repository password Secret: there is nothing to rotate", namespace)
	}
	return groups, nil
}

// request puts the new password into the group's Secret and asks the controller to rotate to it, or, when a
// rotation of that Secret is already under way and no other password is given, picks it up to wait for it.
// It reports whether it generated the password.
func (o *passwordRotateOptions) request(ctx context.Context, cl client.Client, g *passwordGroup, given []byte) (generated bool, err error) {
	var sec corev1.Secret
	if err := cl.Get(ctx, client.ObjectKey{Namespace: o.namespace, Name: g.secret}, &sec); err != nil {
		return false, fmt.Errorf("read repository password Secret %s/%s: %w", o.namespace, g.secret, err)
	}
	next, previous := sec.Data[bsl.NextPasswordKey(g.key)], sec.Data[bsl.PreviousPasswordKey(g.key)]
	switch {
	case len(next) > 0 && given != nil && !bytes.Equal(next, given):
		return false, fmt.Errorf("a rotation of Secret %s/%s to another password is under way: run rotate without --new-password-file to wait for it, or delete key %s from the Secret to abandon it",
			o.namespace, g.secret, bsl.NextPasswordKey(g.key))
	case len(next) == 0 && len(previous) > 0 && given != nil:
		return false, fmt.Errorf("the previous rotation of Secret %s/%s is still removing the old password's keys: run rotate without --new-password-file to wait for it, then rotate again",
			o.namespace, g.secret)
	case len(next) > 0 || len(previous) > 0:
		// Under way (an earlier rotate that stopped waiting): follow the request the locations carry.
		g.request, err = o.annotate(ctx, cl, g, "")
		return false, err
	}
	pw := given
	if pw == nil {
		pw, generated = newRandomPassword(), true
	}
	if bytes.Equal(pw, sec.Data[g.key]) {
		return false, fmt.Errorf("the new password is the one Secret %s/%s holds already", o.namespace, g.secret)
	}
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	sec.Data[bsl.NextPasswordKey(g.key)] = pw
	// The resourceVersion read makes a concurrent rotate a conflict instead of a lost password.
	if err := cl.Update(ctx, &sec); err != nil {
		if apierrors.IsConflict(err) {
			return false, fmt.Errorf("the Secret %s/%s changed while rotate wrote the new password into it: run rotate again", o.namespace, g.secret)
		}
		return false, fmt.Errorf("write the new password into Secret %s/%s: %w", o.namespace, g.secret, err)
	}
	g.request, err = o.annotate(ctx, cl, g, strings.ToLower(rand.Text()[:12]))
	return generated, err
}

// annotate sets the rotation request on every location of the group: request, or when empty the one a
// location already carries (a new one if none does).
func (o *passwordRotateOptions) annotate(ctx context.Context, cl client.Client, g *passwordGroup, request string) (string, error) {
	locs := make([]*v1.BackupStorageLocation, 0, len(g.locations))
	for _, name := range g.locations {
		var loc v1.BackupStorageLocation
		if err := cl.Get(ctx, client.ObjectKey{Namespace: o.namespace, Name: name}, &loc); err != nil {
			return "", fmt.Errorf("read storage location %s: %w", name, err)
		}
		if request == "" {
			request = loc.Annotations[v1.PasswordRotationAnnotation]
		}
		locs = append(locs, &loc)
	}
	if request == "" {
		request = strings.ToLower(rand.Text()[:12])
	}
	for _, loc := range locs {
		patch := client.MergeFrom(loc.DeepCopy())
		if loc.Annotations == nil {
			loc.Annotations = map[string]string{}
		}
		loc.Annotations[v1.PasswordRotationAnnotation] = request
		if err := cl.Patch(ctx, loc, patch); err != nil {
			return "", fmt.Errorf("ask for the rotation on storage location %s: %w", loc.Name, err)
		}
	}
	return request, nil
}

// wait reads the locations' status.passwordRotation until every one reports its group's request Completed,
// printing each phase as it is reached.
func (o *passwordRotateOptions) wait(ctx context.Context, cl client.Client, groups []*passwordGroup, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	shown := map[string]v1.RotationPhase{}
	last := map[string]string{}
	for {
		pending := 0
		for _, g := range groups {
			for _, name := range g.locations {
				st, err := rotationStatus(ctx, cl, o.namespace, name, g.request)
				if err != nil {
					last[name] = err.Error()
					pending++
					continue
				}
				if st == nil {
					last[name] = "the controller has not picked the request up: is it running? (kubectl -n " + o.namespace + " get deployment straddle-controller)"
					pending++
					continue
				}
				last[name] = fmt.Sprintf("phase %s: %s", st.Phase, st.Message)
				if shown[name] != st.Phase {
					shown[name] = st.Phase
					printRotationPhase(out, name, st)
				}
				switch st.Phase {
				case v1.RotationFailed:
					return fmt.Errorf("the password rotation failed on storage location %s: %s (the controller tries it again every little while; run rotate without --new-password-file to keep waiting)", name, st.Message)
				case v1.RotationCompleted:
				default:
					pending++
				}
			}
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var why []string
			for name, l := range last {
				why = append(why, "storage location "+name+": "+l)
			}
			slices.Sort(why)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("the password rotation did not finish within %s (%s); run rotate without --new-password-file to keep waiting", o.timeout, strings.Join(why, "; "))
			}
			return fmt.Errorf("stopped waiting; the rotation goes on in the controller (%s)", strings.Join(why, "; "))
		case <-time.After(o.interval):
		}
	}
}

// rotationStatus is a location's status.passwordRotation when it reports on request, else nil.
func rotationStatus(ctx context.Context, cl client.Client, namespace, name, request string) (*v1.PasswordRotationStatus, error) {
	var loc v1.BackupStorageLocation
	if err := cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &loc); err != nil {
		return nil, fmt.Errorf("read storage location %s: %w", name, err)
	}
	if st := loc.Status.PasswordRotation; st != nil && st.Request == request {
		return st, nil
	}
	return nil, nil
}

func printRotationPhase(out io.Writer, location string, st *v1.PasswordRotationStatus) {
	repos := fmt.Sprintf("%d repositories", len(st.Repositories))
	if len(st.Repositories) > 0 {
		repos += " (" + strings.Join(st.Repositories, ", ") + ")"
	}
	switch st.Phase {
	case v1.RotationGracePeriod:
		fmt.Fprintf(out, "storage location %s: the new password opens %s; the Secret holds it now, the old one is removed after the grace period\n", location, repos)
	case v1.RotationCompleted:
		fmt.Fprintf(out, "storage location %s: rotated; the new password opens %s, the old one none\n", location, repos)
	case v1.RotationFailed:
	default:
		fmt.Fprintf(out, "storage location %s: %s\n", location, st.Message)
	}
}
