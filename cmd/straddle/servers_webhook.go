package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/straddle-io/straddle/controller"
	"github.com/straddle-io/straddle/controller/webhookcert"
)

// restoreWebhook is how the controller serves the restore webhook.
type restoreWebhook struct {
	port int
	// url is the webhook's full URL for the configuration; "" keeps its Service reference.
	url   string
	hosts webhookcert.Hosts
}

// webhookOptions checks the webhook flags; nil when the webhook is off.
func (o *controllerOptions) webhookOptions() (*restoreWebhook, error) {
	if o.webhookPort == 0 {
		if o.webhookURL != "" {
			return nil, errors.New("--webhook-url needs the webhook on: --webhook-port must not be 0")
		}
		return nil, nil
	}
	if o.webhookPort < 0 || o.webhookPort > 65535 {
		return nil, fmt.Errorf("--webhook-port %d is not a port", o.webhookPort)
	}
	svc := controller.WebhookServiceName + "." + o.namespace + ".svc"
	w := &restoreWebhook{port: o.webhookPort, hosts: webhookcert.Hosts{DNSNames: []string{svc, svc + ".cluster.local"}}}
	if o.webhookURL == "" {
		return w, nil
	}
	u, err := url.Parse(o.webhookURL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--webhook-url %q must be an https URL with a host and no query, e.g. https://127.0.0.1:%d", o.webhookURL, o.webhookPort)
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		w.hosts.IPs = append(w.hosts.IPs, ip)
	} else {
		w.hosts.DNSNames = append(w.hosts.DNSNames, u.Hostname())
	}
	w.url = strings.TrimSuffix(u.String(), "/") + controller.RestoreWaitWebhookPath
	return w, nil
}

// setup makes or reuses the certificate, points the webhook configuration at it, and adds the webhook server
// (ready once it serves) and the certificate's renewal to the manager.
func (w *restoreWebhook) setup(ctx context.Context, mgr ctrl.Manager, namespace string) error {
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("webhook client: %w", err)
	}
	log := mgr.GetLogger().WithName("restore-webhook")
	certs := &webhookcert.Manager{Client: direct, Clock: clock.RealClock{}, Log: log, Namespace: namespace,
		ConfigurationName: controller.RestoreWaitWebhookConfiguration, Hosts: w.hosts, URL: w.url}
	err = certs.Ensure(ctx)
	if errors.Is(err, webhookcert.ErrNoConfiguration) {
		// Served all the same: the configuration may come later (straddle install), and the next check patches it.
		log.Info("no webhook configuration yet: pods that restored controllers create get no restore-wait until straddle install makes it",
			"configuration", controller.RestoreWaitWebhookConfiguration)
	} else if err != nil {
		return fmt.Errorf("restore webhook certificate: %w", err)
	}
	server := webhook.NewServer(webhook.Options{Port: w.port, TLSOpts: []func(*tls.Config){func(c *tls.Config) {
		c.GetCertificate = certs.GetCertificate
	}}})
	server.Register(controller.RestoreWaitWebhookPath, &admission.Webhook{Handler: &controller.RestoreWaitWebhook{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Events:    mgr.GetEventRecorder("straddle-controller"),
		Namespace: namespace,
	}})
	if err := mgr.Add(server); err != nil {
		return fmt.Errorf("add webhook server: %w", err)
	}
	if err := mgr.Add(certs); err != nil {
		return fmt.Errorf("add webhook certificate renewal: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return fmt.Errorf("webhook ready check: %w", err)
	}
	return nil
}
