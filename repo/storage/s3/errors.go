package s3

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/straddle-io/straddle/repo/storage"
)

// permissionCodes are the S3 error codes that mean the credentials are wrong or not allowed: retrying does
// not help, the user must act.
var permissionCodes = map[string]bool{
	"AccessDenied":          true,
	"InvalidAccessKeyId":    true,
	"SignatureDoesNotMatch": true,
	"InvalidToken":          true,
	"ExpiredToken":          true,
	"TokenRefreshRequired":  true,
	"AllAccessDisabled":     true,
	"AccountProblem":        true,
}

// sentinel maps an S3 answer to the storage error callers test for, or nil. A 404 without a code (HEAD
// answers have no body) on an object means the object.
func sentinel(err error, object bool) error {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return nil
	}
	switch {
	case resp.Code == minio.NoSuchBucket:
		return storage.ErrNoBucket
	case resp.Code == minio.NoSuchKey, object && resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket:
		return storage.ErrNotFound
	case permissionCodes[resp.Code], resp.StatusCode == http.StatusForbidden:
		return storage.ErrPermission
	case resp.Code == "InvalidRange", resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return storage.ErrTruncated
	}
	return nil
}

// wrap says what failed on which object (or on the bucket, when name is empty) and maps S3's answer to the
// storage sentinels. Messages carry keys, bucket and host, never credentials.
func (b *Backend) wrap(op, name string, err error) error {
	what := fmt.Sprintf("%s bucket %q at %s", op, b.bucket, b.endpoint)
	if name != "" {
		what = fmt.Sprintf("%s %s in bucket %q at %s", op, b.prefix+name, b.bucket, b.endpoint)
	}
	var resp minio.ErrorResponse
	errors.As(err, &resp)
	switch s := sentinel(err, name != ""); s {
	case nil:
	case storage.ErrPermission:
		if b.anonymous {
			return fmt.Errorf("%s: %w (no credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in the shared credentials file)", what, s)
		}
		return fmt.Errorf("%s: %w (S3 error %s; credentials from %s)", what, s, resp.Code, b.credsFrom)
	default:
		return fmt.Errorf("%s: %w", what, s)
	}
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	if errors.As(err, &unknownCA) || errors.As(err, &invalid) || errors.As(err, &hostname) {
		return fmt.Errorf("%s: the server's TLS certificate is not trusted: %w", what, err)
	}
	if transient(resp) || connectionClosed(err) {
		return fmt.Errorf("%s: %w (S3 error %s, HTTP %d)", what, storage.Transient(err), resp.Code, resp.StatusCode)
	}
	if resp.Code != "" {
		return fmt.Errorf("%s: %w (S3 error %s, HTTP %d)", what, err, resp.Code, resp.StatusCode)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// transient reports an S3 answer worth repeating, by the contract in package storage: any 5xx, throttling
// (429, SlowDown) and request timeouts.
func transient(resp minio.ErrorResponse) bool {
	switch resp.Code {
	case "SlowDown", "SlowDownRead", "SlowDownWrite", "RequestTimeout", "InternalError", "ServiceUnavailable":
		return true
	}
	return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
}

// connectionClosed reports a connection the server closed before answering. net/http says so with io.EOF in a
// *url.Error, which the retry wrapper recognises, but minio-go replaces that io.EOF with an error of its own
// ("Connection closed by foreign host …"), losing the type; only its message is left to go by.
func connectionClosed(err error) bool {
	ue, ok := errors.AsType[*url.Error](err)
	return ok && ue.Err != nil && strings.Contains(ue.Err.Error(), "Connection closed by foreign host")
}
