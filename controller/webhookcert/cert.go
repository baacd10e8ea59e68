// Package webhookcert gives the controller's webhook server its TLS certificate without cert-manager: a
// self-signed CA and a serving certificate kept in a Secret of the install namespace (so replicas share
// them), made anew when near expiry, and the CA bundle patched into the MutatingWebhookConfiguration.
package webhookcert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Validity is how long a generated CA and serving certificate are valid.
const Validity = 365 * 24 * time.Hour

// RenewBefore is how long before its expiry a certificate is made anew.
const RenewBefore = 30 * 24 * time.Hour

// Bundle is a CA and the serving certificate and key it signed, PEM-encoded, as the Secret holds them.
type Bundle struct {
	CA, Cert, Key []byte
}

// Hosts are the names a serving certificate must hold: DNS names and IP addresses.
type Hosts struct {
	DNSNames []string
	IPs      []net.IP
}

// Generate makes a new CA and a serving certificate for hosts, valid from now for Validity. The CA key is
// not kept: the CA signs this one certificate, and the next renewal makes a new CA.
func Generate(now time.Time, hosts Hosts) (Bundle, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Bundle{}, fmt.Errorf("generate CA key: %w", err)
	}
	notBefore, notAfter := now.Add(-time.Hour), now.Add(Validity)
	caSerial, err := serial()
	if err != nil {
		return Bundle{}, err
	}
	certSerial, err := serial()
	if err != nil {
		return Bundle{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: "straddle-webhook-ca"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Bundle{}, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Bundle{}, fmt.Errorf("parse CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Bundle{}, fmt.Errorf("generate serving key: %w", err)
	}
	name := "straddle-webhook"
	if len(hosts.DNSNames) > 0 {
		name = hosts.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: certSerial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     hosts.DNSNames,
		IPAddresses:  hosts.IPs,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return Bundle{}, fmt.Errorf("create serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Bundle{}, fmt.Errorf("encode serving key: %w", err)
	}
	return Bundle{
		CA:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// serial is random, so two certificates made at once (by two replicas) differ.
func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("certificate serial number: %w", err)
	}
	return n, nil
}

// Check says why b cannot serve hosts at now and a while on ("" if it can): it does not parse, the CA does
// not verify the certificate for every host, or the certificate expires within RenewBefore.
func Check(b Bundle, now time.Time, hosts Hosts) string {
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		return fmt.Sprintf("certificate and key unusable: %v", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Sprintf("certificate unreadable: %v", err)
	}
	if left := cert.NotAfter.Sub(now); left < RenewBefore {
		return fmt.Sprintf("certificate expires %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CA) {
		return "CA certificate unreadable"
	}
	if block, _ := pem.Decode(b.CA); block != nil {
		if ca, err := x509.ParseCertificate(block.Bytes); err != nil || ca.NotAfter.Sub(now) < RenewBefore {
			return "CA certificate unreadable or near its expiry"
		}
	}
	names := slices.Clone(hosts.DNSNames)
	for _, ip := range hosts.IPs {
		names = append(names, ip.String())
	}
	for _, name := range names {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			return fmt.Sprintf("certificate does not serve %s: %v", name, err)
		}
	}
	return ""
}

// KeyPair is b's serving certificate for a tls.Config.
func (b Bundle) KeyPair() (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		return nil, fmt.Errorf("load webhook certificate: %w", err)
	}
	return &pair, nil
}

// Equal reports whether two bundles hold the same certificates and key.
func (b Bundle) Equal(o Bundle) bool {
	return bytes.Equal(b.CA, o.CA) && bytes.Equal(b.Cert, o.Cert) && bytes.Equal(b.Key, o.Key)
}

// stillValidCA is the first certificate of the PEM bundle if it is a CA certificate that has not expired at
// now; nil otherwise.
func stillValidCA(bundle []byte, now time.Time) []byte {
	block, _ := pem.Decode(bundle)
	if block == nil {
		return nil
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !ca.IsCA || !now.Before(ca.NotAfter) {
		return nil
	}
	return pem.EncodeToMemory(block)
}
