package webhookcert

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Keys of the Secret (a kubernetes.io/tls Secret, with the CA beside).
const (
	CAKey   = "ca.crt"
	CertKey = corev1.TLSCertKey
	KeyKey  = corev1.TLSPrivateKeyKey
)

// DefaultSecretName is the Secret in the install namespace holding the webhook's certificates.
const DefaultSecretName = "straddle-webhook-tls"

// CheckInterval is how often a running controller looks whether the certificate needs renewing, and
// RetryInterval how soon it looks again after a failure.
const (
	CheckInterval = time.Hour
	RetryInterval = 10 * time.Second
)

// Manager keeps the webhook server's certificate: Ensure makes or reuses the Secret's and patches the CA
// bundle into the webhook configuration; GetCertificate serves the current one; as a manager Runnable it
// renews it when near expiry.
type Manager struct {
	// Client reads and writes the Secret and the configuration directly: Ensure runs before any cache.
	Client client.Client
	Clock  clock.PassiveClock
	Log    logr.Logger
	// Namespace and SecretName name the Secret (DefaultSecretName if empty).
	Namespace, SecretName string
	// ConfigurationName is the MutatingWebhookConfiguration whose webhooks get the CA bundle.
	ConfigurationName string
	// Hosts are the names the certificate serves.
	Hosts Hosts
	// URL, when set, replaces the configuration's service reference: the controller runs outside the
	// cluster, where the API server reaches it by URL.
	URL string
	// Retry is how soon a failed check is tried again (RetryInterval if zero).
	Retry time.Duration

	current atomic.Pointer[tls.Certificate]
	// lastErr says the last Ensure failed.
	lastErr atomic.Bool
}

// ErrNoConfiguration says the webhook configuration does not exist: the API server calls no webhook.
var ErrNoConfiguration = errors.New("webhook configuration not found")

// Ensure makes the Secret's certificate usable (reusing it, or making one anew), serves it, and patches the
// configuration. ErrNoConfiguration (wrapped) means the certificate is served but nothing calls it.
func (m *Manager) Ensure(ctx context.Context) (err error) {
	defer func() { m.lastErr.Store(err != nil) }()
	b, err := m.ensureSecret(ctx)
	if err != nil {
		return err
	}
	pair, err := b.KeyPair()
	if err != nil {
		return err
	}
	m.current.Store(pair)
	return m.patchConfiguration(ctx, b.CA)
}

// GetCertificate is for tls.Config.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.current.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("webhook certificate not loaded yet")
}

// Start renews the certificate every CheckInterval until ctx ends (a manager Runnable). After a failed check
// (the configuration not there yet, say: the controller may start before the install applies it) it tries
// again after RetryInterval, as the API server cannot reach the webhook until the CA bundle is in.
func (m *Manager) Start(ctx context.Context) error {
	retry := m.Retry
	if retry <= 0 {
		retry = RetryInterval
	}
	next := CheckInterval
	if m.lastErr.Load() {
		next = retry
	}
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			next = CheckInterval
			if err := m.Ensure(ctx); err != nil {
				m.Log.Error(err, "webhook certificate or configuration")
				next = retry
			}
			t.Reset(next)
		}
	}
}

// NeedLeaderElection is false: every replica serves the webhook.
func (m *Manager) NeedLeaderElection() bool { return false }

func (m *Manager) secretName() string {
	if m.SecretName != "" {
		return m.SecretName
	}
	return DefaultSecretName
}

// ensureSecret returns the Secret's bundle if it serves the hosts for a while yet, else stores a new one.
// Replicas starting at once race: the loser of a create or update reads the winner's.
func (m *Manager) ensureSecret(ctx context.Context) (Bundle, error) {
	key := client.ObjectKey{Namespace: m.Namespace, Name: m.secretName()}
	for range 5 {
		now := m.Clock.Now()
		var s corev1.Secret
		err := m.Client.Get(ctx, key, &s)
		if err != nil && !apierrors.IsNotFound(err) {
			return Bundle{}, fmt.Errorf("read Secret %s: %w", key, err)
		}
		exists := err == nil
		var old Bundle
		if exists {
			old = Bundle{CA: s.Data[CAKey], Cert: s.Data[CertKey], Key: s.Data[KeyKey]}
			why := Check(old, now, m.Hosts)
			if why == "" {
				return old, nil
			}
			m.Log.Info("making a new webhook certificate", "secret", key.String(), "reason", why)
		}
		b, err := Generate(now, m.Hosts)
		if err != nil {
			return Bundle{}, err
		}
		// Other replicas serve the old certificate until they next look: the API server trusts both CAs
		// until the old one expires.
		b.CA = append(b.CA, stillValidCA(old.CA, now)...)
		s.Namespace, s.Name = m.Namespace, m.secretName()
		s.Type = corev1.SecretTypeTLS
		s.Data = map[string][]byte{CAKey: b.CA, CertKey: b.Cert, KeyKey: b.Key}
		if exists {
			err = m.Client.Update(ctx, &s)
		} else {
			err = m.Client.Create(ctx, &s)
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			return Bundle{}, fmt.Errorf("store webhook certificate in Secret %s: %w", key, err)
		}
		return b, nil
	}
	return Bundle{}, fmt.Errorf("store webhook certificate in Secret %s: kept conflicting with another writer", key)
}

// patchConfiguration puts the CA bundle (and the URL, if set) into every webhook of the configuration.
func (m *Manager) patchConfiguration(ctx context.Context, ca []byte) error {
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	err := m.Client.Get(ctx, client.ObjectKey{Name: m.ConfigurationName}, &cfg)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("MutatingWebhookConfiguration %s: %w", m.ConfigurationName, ErrNoConfiguration)
	}
	if err != nil {
		return fmt.Errorf("read MutatingWebhookConfiguration %s: %w", m.ConfigurationName, err)
	}
	orig := cfg.DeepCopy()
	for i := range cfg.Webhooks {
		cc := &cfg.Webhooks[i].ClientConfig
		cc.CABundle = ca
		if m.URL != "" {
			cc.URL = &m.URL
			cc.Service = nil
		}
	}
	if equality.Semantic.DeepEqual(orig.Webhooks, cfg.Webhooks) {
		return nil
	}
	// The optimistic lock keeps two replicas renewing at once from each writing the other's CA over its own.
	if err := m.Client.Patch(ctx, &cfg, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patch MutatingWebhookConfiguration %s: %w", m.ConfigurationName, err)
	}
	return nil
}
