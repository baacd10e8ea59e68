package webhookcert

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

var (
	t0    = time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC)
	hosts = Hosts{DNSNames: []string{"straddle-webhook.straddle.svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}
)

func TestGenerateServesItsHostsUntilNearExpiry(t *testing.T) {
	b, err := Generate(t0, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if why := Check(b, t0, hosts); why != "" {
		t.Fatalf("fresh bundle: %s", why)
	}
	if why := Check(b, t0.Add(Validity-RenewBefore-time.Hour), hosts); why != "" {
		t.Errorf("a month and an hour before expiry: %s", why)
	}
	if why := Check(b, t0.Add(Validity-RenewBefore+time.Hour), hosts); !strings.Contains(why, "expires") {
		t.Errorf("within a month of expiry: %q, want it renewed", why)
	}
	other := Hosts{DNSNames: []string{"straddle-webhook.backup-system.svc"}}
	if why := Check(b, t0, other); !strings.Contains(why, "does not serve straddle-webhook.backup-system.svc") {
		t.Errorf("other host: %q", why)
	}
	if why := Check(b, t0, Hosts{IPs: []net.IP{net.ParseIP("10.0.0.1")}}); !strings.Contains(why, "does not serve 10.0.0.1") {
		t.Errorf("other IP: %q", why)
	}
	b2, err := Generate(t0, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if why := Check(Bundle{CA: b2.CA, Cert: b.Cert, Key: b.Key}, t0, hosts); why == "" {
		t.Error("a certificate checked against another CA passed")
	}
	if why := Check(Bundle{CA: b.CA, Cert: b.Cert, Key: b2.Key}, t0, hosts); why == "" {
		t.Error("a certificate with another's key passed")
	}
	if why := Check(Bundle{}, t0, hosts); why == "" {
		t.Error("an empty bundle passed")
	}
}

func newManager(t *testing.T, objs ...client.Object) (*Manager, *clocktesting.FakePassiveClock) {
	t.Helper()
	s := runtime.NewScheme()
	_ = corev1.AddToScheme(s)
	_ = admissionregistrationv1.AddToScheme(s)
	clock := clocktesting.NewFakePassiveClock(t0)
	cl := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
	return &Manager{Client: cl, Clock: clock, Log: logr.Discard(), Namespace: "straddle", ConfigurationName: "straddle-restore-wait", Hosts: hosts}, clock
}

func configuration() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "straddle-restore-wait"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "restore-wait.straddle.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "straddle", Name: "straddle-webhook", Path: ptr.To("/p")}}}}}
}

func (m *Manager) stored(t *testing.T) (Bundle, *admissionregistrationv1.MutatingWebhookConfiguration) {
	t.Helper()
	ctx := context.Background()
	var s corev1.Secret
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: "straddle", Name: DefaultSecretName}, &s); err != nil {
		t.Fatal(err)
	}
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := m.Client.Get(ctx, client.ObjectKey{Name: "straddle-restore-wait"}, &cfg); err != nil {
		t.Fatal(err)
	}
	return Bundle{CA: s.Data[CAKey], Cert: s.Data[CertKey], Key: s.Data[KeyKey]}, &cfg
}

func TestEnsureMakesReusesAndRenews(t *testing.T) {
	m, clock := newManager(t, configuration())
	ctx := context.Background()
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	first, cfg := m.stored(t)
	if why := Check(first, t0, hosts); why != "" {
		t.Fatalf("stored bundle: %s", why)
	}
	if cc := cfg.Webhooks[0].ClientConfig; !bytes.Equal(cc.CABundle, first.CA) || cc.Service == nil || cc.URL != nil {
		t.Errorf("client config %+v", cc)
	}
	served, err := m.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := first.KeyPair()
	if !bytes.Equal(served.Certificate[0], pair.Certificate[0]) {
		t.Error("serves another certificate than the Secret's")
	}

	// Another replica, or a restart, a week on: the same certificate.
	again, _ := newManager(t)
	again.Client = m.Client
	clock.SetTime(t0.Add(7 * 24 * time.Hour))
	again.Clock = clock
	if err := again.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if now, _ := again.stored(t); !now.Equal(first) {
		t.Error("a usable certificate was made anew")
	}

	// Near expiry: a new one, and the CA bundle trusts the old CA too, for replicas not yet switched.
	clock.SetTime(t0.Add(Validity - RenewBefore + time.Hour))
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	renewed, cfg := m.stored(t)
	if bytes.Equal(renewed.Cert, first.Cert) || Check(renewed, clock.Now(), hosts) != "" {
		t.Fatal("not renewed")
	}
	if !bytes.HasSuffix(renewed.CA, first.CA) || bytes.Count(renewed.CA, []byte("BEGIN CERTIFICATE")) != 2 {
		t.Errorf("renewed CA bundle does not carry the old CA:\n%s", renewed.CA)
	}
	if !bytes.Equal(cfg.Webhooks[0].ClientConfig.CABundle, renewed.CA) {
		t.Error("configuration has the old CA bundle")
	}
	if why := Check(Bundle{CA: renewed.CA, Cert: first.Cert, Key: first.Key}, t0, hosts); why != "" {
		t.Errorf("the old certificate is not trusted by the new bundle: %s", why)
	}
}

func TestEnsureWithURLReplacesTheService(t *testing.T) {
	m, _ := newManager(t, configuration())
	m.URL = "https://127.0.0.1:9443/mutate"
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, cfg := m.stored(t)
	cc := cfg.Webhooks[0].ClientConfig
	if cc.Service != nil || cc.URL == nil || *cc.URL != m.URL || !bytes.Equal(cc.CABundle, b.CA) {
		t.Errorf("client config %+v", cc)
	}
}

func TestEnsureWithoutConfigurationStillServes(t *testing.T) {
	m, _ := newManager(t)
	if err := m.Ensure(context.Background()); !errors.Is(err, ErrNoConfiguration) {
		t.Fatalf("err %v, want ErrNoConfiguration", err)
	}
	if _, err := m.GetCertificate(nil); err != nil {
		t.Error(err)
	}
}

func TestEnsureReplacesAnUnusableSecret(t *testing.T) {
	broken := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: DefaultSecretName}, Data: map[string][]byte{CertKey: []byte("junk")}}
	m, _ := newManager(t, broken, configuration())
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := m.stored(t); Check(b, t0, hosts) != "" {
		t.Error("broken Secret kept")
	}
}

func TestStartPatchesAConfigurationThatCameLate(t *testing.T) {
	m, _ := newManager(t)
	m.Retry = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Ensure(ctx); !errors.Is(err, ErrNoConfiguration) {
		t.Fatalf("err %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	if err := m.Client.Create(ctx, configuration()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, cfg := m.stored(t)
		if bytes.Equal(cfg.Webhooks[0].ClientConfig.CABundle, b.CA) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the configuration never got the CA bundle")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
