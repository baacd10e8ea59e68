package deploy

import (
	"encoding/base64"
	"fmt"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// Names of the objects an install with a storage location adds.
const (
	DefaultLocationName      = "default"
	CredentialsSecretName    = "straddle-storage-credentials"
	CredentialsSecretKey     = "cloud"
	RepositoryPasswordSecret = "straddle-repository-password"
	RepositoryPasswordKey    = "password"
)

// Storage is the default BackupStorageLocation an install creates; a zero Provider creates none.
type Storage struct {
	// Provider is "s3" or "filesystem".
	Provider string
	// Bucket, Prefix, URL (http(s)://host[:port]), Region, CABundle (PEM) and ForcePathStyle describe an S3
	// bucket; Credentials is an AWS shared credentials file for it.
	Bucket, Prefix, URL, Region string
	CABundle                    []byte
	ForcePathStyle              bool
	Credentials                 []byte
	// Path is the directory of a filesystem location, mounted at the same path on every node.
	Path string
	// RepositoryPassword seals every repository's keys; it is stored in a Secret, never in the location.
	RepositoryPassword []byte
}

// validate checks the storage flags before anything is rendered, so a user learns of a typo before install.
func (s Storage) validate() error {
	switch s.Provider {
	case "":
		if s.Bucket != "" || s.URL != "" || s.Path != "" || len(s.Credentials) > 0 {
			return fmt.Errorf("storage settings given without a provider: pass --provider s3 or --provider filesystem")
		}
		return nil
	case "s3":
		if s.Bucket == "" {
			return fmt.Errorf("provider s3 needs --bucket")
		}
		if _, _, err := v1.ParseS3Endpoint(s.URL); err != nil {
			return fmt.Errorf("provider s3 needs --s3-url http(s)://host[:port], got %q", s.URL)
		}
	case "filesystem":
		if !path.IsAbs(s.Path) {
			return fmt.Errorf("provider filesystem needs --path, an absolute directory, got %q", s.Path)
		}
	default:
		return fmt.Errorf("unknown provider %q: want s3 or filesystem", s.Provider)
	}
	if len(s.RepositoryPassword) == 0 {
		return fmt.Errorf("a storage location needs a repository password")
	}
	return nil
}

// storageObjects renders the Secrets and the default location, in apply order.
func storageObjects(ns string, s Storage) []*unstructured.Unstructured {
	if s.Provider == "" {
		return nil
	}
	secret := func(name, key string, value []byte) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"app.kubernetes.io/part-of": "straddle"}},
			"type":     "Opaque",
			// data, not stringData: server-side apply owns data cleanly across re-installs.
			"data": map[string]any{key: base64.StdEncoding.EncodeToString(value)},
		}}
	}
	objs := []*unstructured.Unstructured{secret(RepositoryPasswordSecret, RepositoryPasswordKey, s.RepositoryPassword)}
	spec := map[string]any{
		"provider":                 s.Provider,
		"default":                  true,
		"repositoryPasswordSecret": map[string]any{"name": RepositoryPasswordSecret, "key": RepositoryPasswordKey},
	}
	switch s.Provider {
	case "s3":
		s3 := map[string]any{"endpoint": strings.TrimSuffix(s.URL, "/"), "bucket": s.Bucket, "forcePathStyle": s.ForcePathStyle}
		if s.Prefix != "" {
			s3["prefix"] = strings.Trim(s.Prefix, "/")
		}
		if s.Region != "" {
			s3["region"] = s.Region
		}
		if len(s.CABundle) > 0 {
			// caBundle is a []byte field, which JSON carries as base64.
			s3["caBundle"] = base64.StdEncoding.EncodeToString(s.CABundle)
		}
		if len(s.Credentials) > 0 {
			objs = append(objs, secret(CredentialsSecretName, CredentialsSecretKey, s.Credentials))
			s3["credentialsSecret"] = map[string]any{"name": CredentialsSecretName, "key": CredentialsSecretKey}
		}
		spec["s3"] = s3
	case "filesystem":
		spec["filesystem"] = map[string]any{"path": s.Path}
	}
	objs = append(objs, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "straddle.io/v1alpha1", "kind": "BackupStorageLocation",
		"metadata": map[string]any{"name": DefaultLocationName, "namespace": ns},
		"spec":     spec,
	}})
	return objs
}
