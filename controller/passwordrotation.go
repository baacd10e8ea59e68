package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/storage"
)

// Defaults of the PasswordRotationReconciler.
const (
	// DefaultPasswordRotationGrace is how long both passwords stay valid after the Secret changed: an agent
	// reads the Secret and opens the repository within seconds, so a minute covers the slowest.
	DefaultPasswordRotationGrace = time.Minute
	// DefaultPasswordRotationRetryDelay is how soon a failed step is tried again.
	DefaultPasswordRotationRetryDelay = 30 * time.Second
)

// Event reasons of a password rotation, recorded on the BackupStorageLocations.
const (
	ReasonPasswordKeysAdded    = "PasswordKeysAdded"
	ReasonPasswordRotated      = "PasswordRotated"
	ReasonPasswordRotateFailed = "PasswordRotationFailed"
)

// PasswordRotationReconciler rotates the repository password of a location's password Secret when the
// location carries v1.PasswordRotationAnnotation and the Secret a new password (bsl.NextPasswordKey): it adds
// the new password's key to every repository of every location using that Secret, switches the Secret, waits
// Grace, then removes the old password's keys. It runs in the controller, not the CLI, because only the
// cluster reaches every location (a filesystem location is a hostPath or NFS mount inside it).
//
// All state is in the Secret (which keys it holds) and the repositories (which passwords open them), so any
// step can be run again after a crash or restart; status.passwordRotation only reports it.
type PasswordRotationReconciler struct {
	Client client.Client
	// Secrets reads the password Secrets fresh (the manager's API reader: the controller caches no Secrets).
	Secrets client.Reader
	Clock   clock.PassiveClock
	Events  events.EventRecorder
	// Namespace is the install namespace; locations elsewhere are ignored.
	Namespace string
	// Grace is how long both passwords open the repositories after the Secret changed
	// (DefaultPasswordRotationGrace if zero).
	Grace time.Duration
	// RetryDelay is how soon a failed step is tried again (DefaultPasswordRotationRetryDelay if zero).
	RetryDelay time.Duration
	// KDF seals the new keys; zero means crypto.DefaultKDF (tests use a cheap one).
	KDF crypto.KDFParams
}

// SetupWithManager fills unset tunables and registers the reconciler.
func (r *PasswordRotationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.setDefaults()
	// A request is an annotation change; the status this reconciler writes must not wake it again.
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.BackupStorageLocation{}, builder.WithPredicates(predicate.AnnotationChangedPredicate{})).
		Named("passwordrotation").Complete(r)
}

func (r *PasswordRotationReconciler) setDefaults() {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Grace <= 0 {
		r.Grace = DefaultPasswordRotationGrace
	}
	if r.RetryDelay <= 0 {
		r.RetryDelay = DefaultPasswordRotationRetryDelay
	}
	if r.KDF == (crypto.KDFParams{}) {
		r.KDF = crypto.DefaultKDF
	}
}

// rotation is one rotation in progress: the request, the Secret, and every location using it.
type rotation struct {
	request   string
	secret    *corev1.Secret
	key       string
	locations []v1.BackupStorageLocation
}

// Reconcile moves the rotation a location asks for one phase on: add keys, switch the Secret, wait, remove
// the old keys.
func (r *PasswordRotationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace != r.Namespace {
		return ctrl.Result{}, nil
	}
	var loc v1.BackupStorageLocation
	if err := r.Client.Get(ctx, req.NamespacedName, &loc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	request := loc.Annotations[v1.PasswordRotationAnnotation]
	if st := loc.Status.PasswordRotation; request == "" || (st != nil && st.Request == request && st.Phase == v1.RotationCompleted) {
		return ctrl.Result{}, nil
	}
	rot, err := r.load(ctx, &loc, request)
	if err != nil {
		return r.fail(ctx, []v1.BackupStorageLocation{loc}, request, err)
	}
	switch {
	case len(rot.secret.Data[bsl.NextPasswordKey(rot.key)]) > 0:
		return r.addKeys(ctx, rot)
	case len(rot.secret.Data[bsl.PreviousPasswordKey(rot.key)]) > 0:
		return r.removeOldKeys(ctx, rot)
	}
	// Neither a new nor an old password waits: another location sharing the Secret finished this request,
	// and its status here was written then; or the new password was taken out of the Secret by hand.
	if st := loc.Status.PasswordRotation; st != nil && st.Request == request && st.Phase == v1.RotationCompleted {
		return ctrl.Result{}, nil
	}
	return r.fail(ctx, rot.locations, request, fmt.Errorf("the Secret %s/%s holds no new password under %q: run straddle repository-password rotate again",
		rot.secret.Namespace, rot.secret.Name, bsl.NextPasswordKey(rot.key)))
}

// load reads the Secret of loc and the locations that share it (same Secret and key).
func (r *PasswordRotationReconciler) load(ctx context.Context, loc *v1.BackupStorageLocation, request string) (*rotation, error) {
	name, key, err := bsl.PasswordSecretRef(loc)
	if err != nil {
		return nil, err
	}
	sec, _, err := bsl.PasswordSecret(ctx, r.Secrets, loc)
	if err != nil {
		return nil, err
	}
	var all v1.BackupStorageLocationList
	if err := r.Client.List(ctx, &all, client.InNamespace(r.Namespace)); err != nil {
		return nil, fmt.Errorf("list storage locations: %w", err)
	}
	rot := &rotation{request: request, secret: sec, key: key}
	for _, l := range all.Items {
		if n, k, err := bsl.PasswordSecretRef(&l); err == nil && n == name && k == key {
			rot.locations = append(rot.locations, l)
		}
	}
	slices.SortFunc(rot.locations, func(a, b v1.BackupStorageLocation) int { return strings.Compare(a.Name, b.Name) })
	return rot, nil
}

// addKeys gives every repository of every location the new password's key, then switches the Secret to it,
// keeping the old one under bsl.PreviousPasswordKey for the grace period.
func (r *PasswordRotationReconciler) addKeys(ctx context.Context, rot *rotation) (ctrl.Result, error) {
	oldPw, newPw := rot.secret.Data[rot.key], rot.secret.Data[bsl.NextPasswordKey(rot.key)]
	start := metav1.NewTime(r.Clock.Now())
	r.setStatus(ctx, rot, func(loc string, st *v1.PasswordRotationStatus) {
		st.Phase, st.Message, st.StartTime = v1.RotationAddingKeys, "adding the new password's key to every repository", &start
	})
	added := 0
	repos, err := r.eachRepository(ctx, rot, func(be storage.Backend) error {
		ok, err := bsl.AddPassword(ctx, be, oldPw, newPw, r.KDF)
		if ok {
			added++
		}
		return err
	})
	if err != nil {
		return r.fail(ctx, rot.locations, rot.request, err)
	}
	sec := rot.secret.DeepCopy()
	sec.Data[rot.key] = newPw
	sec.Data[bsl.PreviousPasswordKey(rot.key)] = oldPw
	delete(sec.Data, bsl.NextPasswordKey(rot.key))
	now := r.Clock.Now()
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	sec.Annotations[bsl.RotatedAtAnnotation] = now.UTC().Format(time.RFC3339)
	// The resourceVersion read makes a concurrent change (the CLI writing another new password) a conflict.
	if err := r.Client.Update(ctx, sec); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return r.fail(ctx, rot.locations, rot.request, fmt.Errorf("switch Secret %s/%s to the new password: %w", sec.Namespace, sec.Name, err))
	}
	updated := metav1.NewTime(now)
	r.setStatus(ctx, rot, func(loc string, st *v1.PasswordRotationStatus) {
		st.Phase, st.SecretUpdatedTime, st.Repositories = v1.RotationGracePeriod, &updated, repos[loc]
		st.Message = fmt.Sprintf("the Secret holds the new password; the old one opens the repositories until %s", now.Add(r.Grace).UTC().Format(time.RFC3339))
	})
	ctrl.LoggerFrom(ctx).Info("repository password switched", "secret", sec.Name, "keysAdded", added)
	r.event(rot, corev1.EventTypeNormal, ReasonPasswordKeysAdded, "the new repository password's key is in every repository (%d added); Secret %s switched to it", added, sec.Name)
	// The grace period runs from now: come back when it is over.
	return ctrl.Result{RequeueAfter: r.Grace}, nil
}

// removeOldKeys waits out the grace period, then removes the old password's key from every repository and
// the old password from the Secret.
func (r *PasswordRotationReconciler) removeOldKeys(ctx context.Context, rot *rotation) (ctrl.Result, error) {
	rotatedAt, err := time.Parse(time.RFC3339, rot.secret.Annotations[bsl.RotatedAtAnnotation])
	if err != nil {
		// Missing or garbled (a hand edit): start the grace period now rather than cut it short.
		rotatedAt = r.Clock.Now()
		sec := rot.secret.DeepCopy()
		if sec.Annotations == nil {
			sec.Annotations = map[string]string{}
		}
		sec.Annotations[bsl.RotatedAtAnnotation] = rotatedAt.UTC().Format(time.RFC3339)
		if err := r.Client.Update(ctx, sec); err != nil && !apierrors.IsConflict(err) {
			return r.fail(ctx, rot.locations, rot.request, fmt.Errorf("record the rotation time in Secret %s/%s: %w", sec.Namespace, sec.Name, err))
		}
		return ctrl.Result{RequeueAfter: r.Grace}, nil
	}
	if wait := rotatedAt.Add(r.Grace).Sub(r.Clock.Now()); wait > 0 {
		// Restarted (or woken by another request) inside the grace period: its end is when to come back.
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	oldPw, newPw := rot.secret.Data[bsl.PreviousPasswordKey(rot.key)], rot.secret.Data[rot.key]
	r.setStatus(ctx, rot, func(loc string, st *v1.PasswordRotationStatus) {
		st.Phase, st.Message = v1.RotationRemovingOldKeys, "removing the old password's key from every repository"
	})
	removed := 0
	repos, err := r.eachRepository(ctx, rot, func(be storage.Backend) error {
		ok, err := bsl.RemovePassword(ctx, be, oldPw, newPw, r.KDF)
		if ok {
			removed++
		}
		return err
	})
	if err != nil {
		return r.fail(ctx, rot.locations, rot.request, err)
	}
	sec := rot.secret.DeepCopy()
	delete(sec.Data, bsl.PreviousPasswordKey(rot.key))
	delete(sec.Annotations, bsl.RotatedAtAnnotation)
	if err := r.Client.Update(ctx, sec); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return r.fail(ctx, rot.locations, rot.request, fmt.Errorf("remove the old password from Secret %s/%s: %w", sec.Namespace, sec.Name, err))
	}
	done := metav1.NewTime(r.Clock.Now())
	r.setStatus(ctx, rot, func(loc string, st *v1.PasswordRotationStatus) {
		st.Phase, st.CompletionTime, st.Repositories = v1.RotationCompleted, &done, repos[loc]
		st.Message = fmt.Sprintf("rotated: the new password opens %d repositories here and the old one none", len(st.Repositories))
	})
	ctrl.LoggerFrom(ctx).Info("repository password rotated", "secret", sec.Name, "oldKeysRemoved", removed)
	r.event(rot, corev1.EventTypeNormal, ReasonPasswordRotated, "repository password rotated; the old password's key removed from %d repositories", removed)
	return ctrl.Result{}, nil
}

// eachRepository runs step on every repository of every location of rot, and returns the namespaces done by
// location. It stops at the first failure: the step is safe to run again on the ones already done.
func (r *PasswordRotationReconciler) eachRepository(ctx context.Context, rot *rotation, step func(storage.Backend) error) (map[string][]string, error) {
	done := map[string][]string{}
	for i := range rot.locations {
		loc := &rot.locations[i]
		root, err := bsl.OpenStorage(ctx, r.Secrets, loc, "")
		if err != nil {
			return nil, fmt.Errorf("open storage location %s: %w", loc.Name, err)
		}
		namespaces, err := bsl.RepositoryNamespaces(ctx, root)
		if err != nil {
			return nil, fmt.Errorf("storage location %s: %w", loc.Name, err)
		}
		for _, ns := range namespaces {
			be, err := bsl.OpenStorage(ctx, r.Secrets, loc, bsl.RepositoryPath(ns))
			if err != nil {
				return nil, fmt.Errorf("open storage location %s: %w", loc.Name, err)
			}
			if err := step(be); err != nil {
				return nil, fmt.Errorf("storage location %s, repository of namespace %s: %w", loc.Name, ns, err)
			}
		}
		done[loc.Name] = namespaces
	}
	return done, nil
}

// setStatus writes mutate's change of status.passwordRotation to every location of rot, for rot's request.
// A failed write is logged, not returned: the status only reports, and the next step writes it again.
func (r *PasswordRotationReconciler) setStatus(ctx context.Context, rot *rotation, mutate func(loc string, st *v1.PasswordRotationStatus)) {
	for i := range rot.locations {
		r.patchStatus(ctx, &rot.locations[i], rot.request, mutate)
	}
}

func (r *PasswordRotationReconciler) patchStatus(ctx context.Context, loc *v1.BackupStorageLocation, request string, mutate func(loc string, st *v1.PasswordRotationStatus)) {
	patch := client.MergeFrom(loc.DeepCopy())
	st := loc.Status.PasswordRotation
	if st == nil || st.Request != request {
		st = &v1.PasswordRotationStatus{Request: request}
	} else {
		st = st.DeepCopy()
	}
	mutate(loc.Name, st)
	loc.Status.PasswordRotation = st
	if err := r.Client.Status().Patch(ctx, loc, patch); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "record password rotation status", "location", loc.Name)
	}
}

// fail records err on the locations and tries again after RetryDelay: storage that was unreachable may be back.
func (r *PasswordRotationReconciler) fail(ctx context.Context, locs []v1.BackupStorageLocation, request string, err error) (ctrl.Result, error) {
	msg := err.Error()
	for i := range locs {
		r.patchStatus(ctx, &locs[i], request, func(loc string, st *v1.PasswordRotationStatus) {
			st.Phase, st.Message = v1.RotationFailed, msg
		})
		if r.Events != nil {
			r.Events.Eventf(&locs[i], nil, corev1.EventTypeWarning, ReasonPasswordRotateFailed, "RotatePassword", "%s; trying again in %s", msg, r.RetryDelay)
		}
	}
	ctrl.LoggerFrom(ctx).Info("password rotation step failed, trying again later", "error", msg, "after", r.RetryDelay)
	return ctrl.Result{RequeueAfter: r.RetryDelay}, nil
}

func (r *PasswordRotationReconciler) event(rot *rotation, eventType, reason, note string, args ...any) {
	if r.Events == nil {
		return
	}
	for i := range rot.locations {
		r.Events.Eventf(&rot.locations[i], nil, eventType, reason, "RotatePassword", note, args...)
	}
}
