//go:build integration

package controller

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/crypto"
)

// rotationEnv is an install namespace with password Secrets and filesystem locations, and a
// PasswordRotationReconciler on a fake clock, reconciled by hand so each phase can be looked at.
type rotationEnv struct {
	t     *testing.T
	ctx   context.Context
	cl    client.Client
	ns    string
	clock *clocktesting.FakeClock
	r     *PasswordRotationReconciler
}

func newRotationEnv(t *testing.T) *rotationEnv {
	cl, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	e := &rotationEnv{t: t, ctx: context.Background(), cl: cl, ns: randomName("straddle"), clock: clocktesting.NewFakeClock(time.Now())}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}})
	e.r = &PasswordRotationReconciler{Client: cl, Secrets: cl, Clock: e.clock, Namespace: e.ns, Grace: time.Minute, KDF: crypto.TestKDF}
	e.r.setDefaults()
	return e
}

func (e *rotationEnv) create(o client.Object) {
	e.t.Helper()
	if err := e.cl.Create(e.ctx, o); err != nil {
		e.t.Fatal(err)
	}
}

// location creates a filesystem location using Secret secret with a repository, sealed by password, for each
// of namespaces.
func (e *rotationEnv) location(name, secret, password string, namespaces ...string) *v1.BackupStorageLocation {
	e.t.Helper()
	loc := &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}, Spec: v1.BackupStorageLocationSpec{
		Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: e.t.TempDir()},
		RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "password"},
	}}
	e.create(loc)
	for _, ns := range namespaces {
		e.initRepo(loc, ns, password)
	}
	return loc
}

func (e *rotationEnv) initRepo(loc *v1.BackupStorageLocation, ns, password string) {
	e.t.Helper()
	be, err := bsl.OpenStorage(e.ctx, e.cl, loc, bsl.RepositoryPath(ns))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := repo.Init(e.ctx, be, []byte(password), repo.InitOptions{KDF: crypto.TestKDF}); err != nil {
		e.t.Fatal(err)
	}
}

// opens says whether password opens the repository of ns in loc.
func (e *rotationEnv) opens(loc *v1.BackupStorageLocation, ns, password string) bool {
	e.t.Helper()
	be, err := bsl.OpenStorage(e.ctx, e.cl, loc, bsl.RepositoryPath(ns))
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = repo.Open(e.ctx, be, []byte(password), repo.OpenOptions{})
	if err != nil && !errors.Is(err, repo.ErrWrongPassword) {
		e.t.Fatal(err)
	}
	return err == nil
}

func (e *rotationEnv) secret(name string) *corev1.Secret {
	e.t.Helper()
	var sec corev1.Secret
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &sec); err != nil {
		e.t.Fatal(err)
	}
	return &sec
}

// request plays the CLI: the new password under password.next, and the request on the locations.
func (e *rotationEnv) request(secret, newPassword, request string, locs ...*v1.BackupStorageLocation) {
	e.t.Helper()
	sec := e.secret(secret)
	sec.Data["password.next"] = []byte(newPassword)
	if err := e.cl.Update(e.ctx, sec); err != nil {
		e.t.Fatal(err)
	}
	for _, loc := range locs {
		patch := client.MergeFrom(loc.DeepCopy())
		loc.Annotations = map[string]string{v1.PasswordRotationAnnotation: request}
		if err := e.cl.Patch(e.ctx, loc, patch); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *rotationEnv) reconcile(loc *v1.BackupStorageLocation) ctrl.Result {
	e.t.Helper()
	res, err := e.r.Reconcile(e.ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(loc)})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *rotationEnv) status(loc *v1.BackupStorageLocation) *v1.PasswordRotationStatus {
	e.t.Helper()
	var got v1.BackupStorageLocation
	if err := e.cl.Get(e.ctx, client.ObjectKeyFromObject(loc), &got); err != nil {
		e.t.Fatal(err)
	}
	if got.Status.PasswordRotation == nil {
		e.t.Fatalf("location %s has no status.passwordRotation", loc.Name)
	}
	return got.Status.PasswordRotation
}

func TestPasswordRotationOfSharedSecret(t *testing.T) {
	e := newRotationEnv(t)
	e.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "pw"}, Data: map[string][]byte{"password": []byte("old-pass")}})
	one := e.location("one", "pw", "old-pass", "shop", "db")
	two := e.location("two", "pw", "old-pass", "shop")
	e.request("pw", "new-pass", "r1", one, two)

	// Phase 1: every repository of both locations gets the new key, then the Secret switches.
	if res := e.reconcile(one); res.RequeueAfter != time.Minute {
		t.Fatalf("after adding keys: requeue %v, want the grace period", res.RequeueAfter)
	}
	sec := e.secret("pw")
	if string(sec.Data["password"]) != "new-pass" || string(sec.Data["password.previous"]) != "old-pass" || sec.Data["password.next"] != nil || sec.Annotations[bsl.RotatedAtAnnotation] == "" {
		t.Fatalf("Secret after adding keys: keys %v, annotations %v", slices.Sorted(maps.Keys(sec.Data)), sec.Annotations)
	}
	for _, c := range []struct {
		loc *v1.BackupStorageLocation
		ns  []string
	}{{one, []string{"db", "shop"}}, {two, []string{"shop"}}} {
		st := e.status(c.loc)
		if st.Request != "r1" || st.Phase != v1.RotationGracePeriod || !slices.Equal(st.Repositories, c.ns) || st.SecretUpdatedTime == nil {
			t.Fatalf("status of %s in the grace period: %+v", c.loc.Name, st)
		}
		for _, ns := range c.ns {
			if !e.opens(c.loc, ns, "old-pass") || !e.opens(c.loc, ns, "new-pass") {
				t.Fatalf("%s/%s: both passwords must open it during the grace period", c.loc.Name, ns)
			}
		}
	}
	// The other location, reconciled inside the grace period (a restart), only waits out the rest of it.
	e.clock.Step(20 * time.Second)
	if res := e.reconcile(two); res.RequeueAfter <= 0 || res.RequeueAfter > 40*time.Second {
		t.Fatalf("inside the grace period: requeue %v, want the rest of it", res.RequeueAfter)
	}
	if e.status(two).Phase != v1.RotationGracePeriod {
		t.Fatalf("inside the grace period: %+v", e.status(two))
	}
	// A repository created with the old password just before the Secret changed (a backup that read it then).
	e.initRepo(two, "late", "old-pass")

	// Phase 2, after the grace period: the old keys go, the late repository gets the new key first.
	e.clock.Step(time.Minute)
	if res := e.reconcile(two); res.RequeueAfter != 0 {
		t.Fatalf("after removing keys: requeue %v", res.RequeueAfter)
	}
	sec = e.secret("pw")
	if string(sec.Data["password"]) != "new-pass" || len(sec.Data) != 1 || sec.Annotations[bsl.RotatedAtAnnotation] != "" {
		t.Fatalf("Secret after the rotation: keys %v, annotations %v", slices.Sorted(maps.Keys(sec.Data)), sec.Annotations)
	}
	for _, c := range []struct {
		loc *v1.BackupStorageLocation
		ns  []string
	}{{one, []string{"db", "shop"}}, {two, []string{"late", "shop"}}} {
		st := e.status(c.loc)
		if st.Phase != v1.RotationCompleted || !slices.Equal(st.Repositories, c.ns) || st.CompletionTime == nil {
			t.Fatalf("status of %s after the rotation: %+v", c.loc.Name, st)
		}
		for _, ns := range c.ns {
			if e.opens(c.loc, ns, "old-pass") || !e.opens(c.loc, ns, "new-pass") {
				t.Fatalf("%s/%s: only the new password may open it", c.loc.Name, ns)
			}
		}
		if strings.Contains(st.Message, "-pass") {
			t.Fatalf("status message holds a password: %q", st.Message)
		}
	}
	// Done is done: reconciling again changes nothing.
	if res := e.reconcile(one); res.RequeueAfter != 0 || e.status(one).Phase != v1.RotationCompleted {
		t.Fatalf("a completed request reconciled again: %v %+v", res, e.status(one))
	}
}

func TestPasswordRotationFailsWhenNoPasswordOpens(t *testing.T) {
	e := newRotationEnv(t)
	e.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "pw"}, Data: map[string][]byte{"password": []byte("old-pass")}})
	loc := e.location("loc", "pw", "old-pass", "good")
	e.initRepo(loc, "foreign", "someone-elses-pass")
	e.request("pw", "new-pass", "r1", loc)
	if res := e.reconcile(loc); res.RequeueAfter != e.r.RetryDelay {
		t.Fatalf("a failed step: requeue %v, want the retry delay", res.RequeueAfter)
	}
	st := e.status(loc)
	if st.Phase != v1.RotationFailed || !strings.Contains(st.Message, "repository of namespace foreign") || !strings.Contains(st.Message, "neither the old nor the new password opens") {
		t.Fatalf("status after a failed step: %+v", st)
	}
	for _, pw := range []string{"old-pass", "new-pass", "someone-elses-pass"} {
		if strings.Contains(st.Message, pw) {
			t.Fatalf("status message holds a password: %q", st.Message)
		}
	}
	// The Secret still holds the old password: nothing switched to a password that does not open everything.
	if sec := e.secret("pw"); string(sec.Data["password"]) != "old-pass" || string(sec.Data["password.next"]) != "new-pass" {
		t.Fatalf("Secret after a failed rotation: %v", slices.Sorted(maps.Keys(sec.Data)))
	}
	// The foreign repository is fixed by hand; the retry finishes the rotation's first phase.
	be, err := bsl.OpenStorage(e.ctx, e.cl, loc, bsl.RepositoryPath("foreign"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bsl.AddPassword(e.ctx, be, []byte("someone-elses-pass"), []byte("old-pass"), crypto.TestKDF); err != nil {
		t.Fatal(err)
	}
	e.reconcile(loc)
	if st := e.status(loc); st.Phase != v1.RotationGracePeriod || !slices.Equal(st.Repositories, []string{"foreign", "good"}) {
		t.Fatalf("status after the retry: %+v", st)
	}
}
