package bsl

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// DefaultPasswordKey is the key of the password in a repositoryPasswordSecret that names none.
const DefaultPasswordKey = "password"

// Keys a password rotation adds beside the password's own key K in its Secret (contract: the CLI writes
// NextPasswordKey, the controller the others):
//
//	K.next      the new password, until every repository has its key and K holds it
//	K.previous  the old password, until its keys are removed from every repository
//
// and the Secret's RotatedAtAnnotation says when K changed, for the grace period.
const (
	nextSuffix     = ".next"
	previousSuffix = ".previous"
	// RotatedAtAnnotation on a password Secret is when a rotation switched it to the new password (RFC 3339).
	RotatedAtAnnotation = "straddle.io/password-rotated-at"
)

// NextPasswordKey is the Secret key the new password waits under during a rotation.
func NextPasswordKey(key string) string { return key + nextSuffix }

// PreviousPasswordKey is the Secret key the old password stays under until its keys are removed.
func PreviousPasswordKey(key string) string { return key + previousSuffix }

// PasswordSecretRef returns the name of a location's password Secret and the key of the password in it.
func PasswordSecretRef(loc *v1.BackupStorageLocation) (name, key string, err error) {
	sel := loc.Spec.RepositoryPasswordSecret
	if sel == nil || sel.Name == "" {
		return "", "", fmt.Errorf("storage location %s names no repositoryPasswordSecret", loc.Name)
	}
	key = sel.Key
	if key == "" {
		key = DefaultPasswordKey
	}
	return sel.Name, key, nil
}

// PasswordSecret reads a location's password Secret (in the location's namespace), fresh from secrets, and
// returns it with the key of the password in it.
func PasswordSecret(ctx context.Context, secrets client.Reader, loc *v1.BackupStorageLocation) (*corev1.Secret, string, error) {
	name, key, err := PasswordSecretRef(loc)
	if err != nil {
		return nil, "", err
	}
	var sec corev1.Secret
	if err := secrets.Get(ctx, client.ObjectKey{Namespace: loc.Namespace, Name: name}, &sec); err != nil {
		return nil, "", fmt.Errorf("read repository password Secret %s/%s: %w", loc.Namespace, name, err)
	}
	return &sec, key, nil
}

// Password reads the repository password of a location from the Secret it names (in the location's
// namespace). It is read on every call, never cached, so a rotated password is used from the next open on.
// Errors never carry the password.
func Password(ctx context.Context, secrets client.Reader, loc *v1.BackupStorageLocation) ([]byte, error) {
	sec, key, err := PasswordSecret(ctx, secrets, loc)
	if err != nil {
		return nil, err
	}
	pw := sec.Data[key]
	if len(pw) == 0 {
		return nil, fmt.Errorf("repository password Secret %s/%s has no key %q, or it is empty", sec.Namespace, sec.Name, key)
	}
	return pw, nil
}
