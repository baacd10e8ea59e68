// Package bsl opens what a BackupStorageLocation names: its storage, the repository of each namespace
// in it, and the folder of each backup's metadata. The controller and the node-agents share it, so both
// agree on where things live.
package bsl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/fs"
	"github.com/straddle-io/straddle/repo/storage/retry"
	"github.com/straddle-io/straddle/repo/storage/s3"
)

// Keys of a credentials Secret that holds the keys themselves rather than a credentials file.
const (
	accessKeyIDKey     = "AWS_ACCESS_KEY_ID"
	secretAccessKeyKey = "AWS_SECRET_ACCESS_KEY"
	sessionTokenKey    = "AWS_SESSION_TOKEN"
)

// OpenStorage opens the storage a location names, below sub (a slash-separated path inside the location, or
// "" for its root), reading its credentials Secret (in the location's namespace) through secrets. The
// Secret's selected key holds an AWS shared credentials file (profile "default", or its only profile), unless
// the Secret has AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY keys, which then win. Without a Secret the
// process's own environment supplies credentials. Failures an object store recovers from are retried.
func OpenStorage(ctx context.Context, secrets client.Reader, loc *v1.BackupStorageLocation, sub string) (storage.Backend, error) {
	if sub != "" {
		if err := storage.ValidName(sub); err != nil {
			return nil, fmt.Errorf("path %q inside location %s: %w", sub, loc.Name, err)
		}
	}
	var be storage.Backend
	switch loc.Spec.Provider {
	case "filesystem":
		if loc.Spec.Filesystem == nil {
			return nil, errors.New("provider filesystem needs the filesystem section")
		}
		root := loc.Spec.Filesystem.Path
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("location %s: directory %s is not there (mounted at the same path on every node?)", loc.Name, root)
		}
		dir := filepath.Join(root, filepath.FromSlash(sub))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("location %s: %w", loc.Name, err)
		}
		fsb, err := fs.Open(dir)
		if err != nil {
			return nil, err
		}
		be = fsb
	case "s3":
		opts, err := S3Options(ctx, secrets, loc)
		if err != nil {
			return nil, err
		}
		opts.Prefix = path.Join(opts.Prefix, sub)
		s3b, err := s3.Open(ctx, opts)
		if err != nil {
			return nil, err
		}
		be = s3b
	default:
		return nil, fmt.Errorf("unknown provider %q", loc.Spec.Provider)
	}
	return retry.New(be, retry.Options{})
}

// S3Options turns an s3 location and its credentials Secret into backend options.
func S3Options(ctx context.Context, secrets client.Reader, loc *v1.BackupStorageLocation) (s3.Options, error) {
	spec := loc.Spec.S3
	if spec == nil {
		return s3.Options{}, errors.New("provider s3 needs the s3 section")
	}
	host, plainHTTP, err := v1.ParseS3Endpoint(spec.Endpoint)
	if err != nil {
		return s3.Options{}, err
	}
	opts := s3.Options{
		Endpoint:  host,
		Bucket:    spec.Bucket,
		Prefix:    spec.Prefix,
		Region:    spec.Region,
		PlainHTTP: plainHTTP,
		CABundle:  spec.CABundle,
	}
	if spec.ForcePathStyle {
		opts.BucketLookup = "path"
	}
	if sel := spec.CredentialsSecret; sel != nil {
		var sec corev1.Secret
		if err := secrets.Get(ctx, client.ObjectKey{Namespace: loc.Namespace, Name: sel.Name}, &sec); err != nil {
			return s3.Options{}, fmt.Errorf("read credentials Secret %s/%s: %w", loc.Namespace, sel.Name, err)
		}
		c, err := credentialsFromSecret(&sec, sel.Key)
		if err != nil {
			return s3.Options{}, fmt.Errorf("credentials Secret %s/%s: %w", loc.Namespace, sel.Name, err)
		}
		opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken = c.accessKeyID, c.secretAccessKey, c.sessionToken
	}
	return opts, nil
}

type awsCredentials struct {
	accessKeyID, secretAccessKey, sessionToken string
}

// credentialsFromSecret reads the keys from a Secret: as AWS_* keys of its own, or from the shared
// credentials file under key (the form Velero users already have).
func credentialsFromSecret(sec *corev1.Secret, key string) (awsCredentials, error) {
	if id, secret := sec.Data[accessKeyIDKey], sec.Data[secretAccessKeyKey]; len(id) > 0 && len(secret) > 0 {
		return awsCredentials{string(id), string(secret), string(sec.Data[sessionTokenKey])}, nil
	}
	file, ok := sec.Data[key]
	if !ok {
		return awsCredentials{}, fmt.Errorf("has no key %q (and no %s and %s keys)", key, accessKeyIDKey, secretAccessKeyKey)
	}
	return parseCredentialsFile(file)
}

// parseCredentialsFile reads an AWS shared credentials file: the "default" profile, or the only profile
// there is. Values are never put into error messages: they are secrets.
func parseCredentialsFile(file []byte) (awsCredentials, error) {
	profiles := map[string]map[string]string{}
	var current map[string]string
	sc := bufio.NewScanner(bytes.NewReader(file))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			name := strings.TrimSpace(strings.TrimPrefix(strings.Trim(line, "[]"), "profile "))
			current = map[string]string{}
			profiles[name] = current
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || current == nil {
				return awsCredentials{}, fmt.Errorf("credentials file line %d is neither [profile] nor key = value", n)
			}
			current[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return awsCredentials{}, fmt.Errorf("read credentials file: %w", err)
	}
	p, ok := profiles["default"]
	if !ok && len(profiles) == 1 {
		for _, only := range profiles {
			p, ok = only, true
		}
	}
	if !ok {
		return awsCredentials{}, fmt.Errorf("credentials file has %d profiles and none is [default]", len(profiles))
	}
	c := awsCredentials{p["aws_access_key_id"], p["aws_secret_access_key"], p["aws_session_token"]}
	if c.accessKeyID == "" || c.secretAccessKey == "" {
		return awsCredentials{}, errors.New("credentials file lacks aws_access_key_id or aws_secret_access_key")
	}
	return c, nil
}
