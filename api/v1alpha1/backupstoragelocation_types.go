package v1alpha1

import (
	"fmt"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupStorageLocationSpec says where repositories live: an S3-compatible bucket or a directory.
// +kubebuilder:validation:XValidation:rule="self.provider != 's3' || has(self.s3)",message="provider s3 needs the s3 section"
// +kubebuilder:validation:XValidation:rule="self.provider != 'filesystem' || has(self.filesystem)",message="provider filesystem needs the filesystem section"
type BackupStorageLocationSpec struct {
	// +kubebuilder:validation:Enum=s3;filesystem
	Provider   string              `json:"provider"`
	S3         *S3Location         `json:"s3,omitempty"`
	Filesystem *FilesystemLocation `json:"filesystem,omitempty"`
	// Default marks the location backups use when they name none.
	Default bool `json:"default,omitempty"`
	// RepositoryPasswordSecret holds the password that seals each repository's keys.
	RepositoryPasswordSecret *corev1.SecretKeySelector `json:"repositoryPasswordSecret,omitempty"`
}

// S3Location is a bucket (and optional prefix) of an S3-compatible store.
type S3Location struct {
	// Endpoint is the store's URL, such as https://minio.example:9000.
	// +kubebuilder:validation:Pattern=`^https?://[^/@]+/?$`
	Endpoint string `json:"endpoint"`
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix,omitempty"`
	Region string `json:"region,omitempty"`
	// CABundle is a PEM bundle to trust for a self-signed or private-CA endpoint.
	CABundle []byte `json:"caBundle,omitempty"`
	// ForcePathStyle addresses buckets by path, as MinIO and most on-premises stores want.
	ForcePathStyle bool `json:"forcePathStyle,omitempty"`
	// CredentialsSecret holds AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a credentials file.
	CredentialsSecret *corev1.SecretKeySelector `json:"credentialsSecret,omitempty"`
}

// FilesystemLocation is a directory every node-agent mounts at the same path.
type FilesystemLocation struct {
	// +kubebuilder:validation:Pattern=`^/`
	Path string `json:"path"`
}

// LocationPhase says whether a location can be used.
// +kubebuilder:validation:Enum=Available;Unavailable
type LocationPhase string

// Location phases.
const (
	LocationAvailable   LocationPhase = "Available"
	LocationUnavailable LocationPhase = "Unavailable"
)

// BackupStorageLocationStatus is the result of the last access check.
type BackupStorageLocationStatus struct {
	Phase              LocationPhase      `json:"phase,omitempty"`
	Message            string             `json:"message,omitempty"`
	LastValidationTime *metav1.Time       `json:"lastValidationTime,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
	// PasswordRotation reports the last rotation of the repository password asked of this location (the
	// PasswordRotationAnnotation). It never holds a password.
	PasswordRotation *PasswordRotationStatus `json:"passwordRotation,omitempty"`
}

// PasswordRotationAnnotation on a BackupStorageLocation asks the controller to rotate the password in the
// location's repositoryPasswordSecret to the one waiting under that Secret's "<key>.next" key (contract:
// `straddle repository-password rotate` sets it). Its value names the request; status.passwordRotation.request
// echoes it.
const PasswordRotationAnnotation = "straddle.io/password-rotation"

// RotationPhase is how far a password rotation got.
// +kubebuilder:validation:Enum=AddingKeys;GracePeriod;RemovingOldKeys;Completed;Failed
type RotationPhase string

// Rotation phases, in order; Failed is retried by the controller and may still end Completed.
const (
	// RotationAddingKeys: the new password's key is being added to every repository.
	RotationAddingKeys RotationPhase = "AddingKeys"
	// RotationGracePeriod: the Secret holds the new password; both passwords open every repository until the
	// grace period has passed, so an agent that read the Secret just before the change still gets in.
	RotationGracePeriod RotationPhase = "GracePeriod"
	// RotationRemovingOldKeys: the old password's key is being removed from every repository.
	RotationRemovingOldKeys RotationPhase = "RemovingOldKeys"
	// RotationCompleted: only the new password opens the repositories.
	RotationCompleted RotationPhase = "Completed"
	// RotationFailed: a step failed (see message); the controller tries it again later.
	RotationFailed RotationPhase = "Failed"
)

// PasswordRotationStatus is the progress of one password rotation in one location.
type PasswordRotationStatus struct {
	// Request is the PasswordRotationAnnotation value this reports on.
	Request string        `json:"request"`
	Phase   RotationPhase `json:"phase"`
	// Message says what is being done, or why the last attempt failed.
	Message string `json:"message,omitempty"`
	// Repositories are the namespaces whose repositories in this location the new password opens.
	Repositories []string `json:"repositories,omitempty"`
	// SecretUpdatedTime is when the Secret was switched to the new password; the old keys go a grace period later.
	SecretUpdatedTime *metav1.Time `json:"secretUpdatedTime,omitempty"`
	StartTime         *metav1.Time `json:"startTime,omitempty"`
	CompletionTime    *metav1.Time `json:"completionTime,omitempty"`
}

// BackupStorageLocation is where backups are stored.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bsl
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Default",type=boolean,JSONPath=`.spec.default`
// +kubebuilder:printcolumn:name="Rotation",type=string,JSONPath=`.status.passwordRotation.phase`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BackupStorageLocation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              BackupStorageLocationSpec   `json:"spec"`
	Status            BackupStorageLocationStatus `json:"status,omitempty"`
}

// BackupStorageLocationList is a list of BackupStorageLocations.
// +kubebuilder:object:root=true
type BackupStorageLocationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupStorageLocation `json:"items"`
}

// ParseS3Endpoint splits an S3Location endpoint (http(s)://host[:port], as the CRD's pattern requires) into
// the host and whether it speaks plain http; the install checks flags with it before the API server could.
func ParseS3Endpoint(endpoint string) (host string, plainHTTP bool, err error) {
	u, err := url.Parse(endpoint)
	if (err == nil && u.User != nil) || strings.Contains(endpoint, "@") {
		where := "?"
		if err == nil {
			where = u.Hostname()
		}
		// Credentials belong in the credentials Secret; the endpoint shows in status, logs and describe, so
		// it is not even quoted here.
		return "", false, fmt.Errorf("s3 endpoint of host %s carries a user name or password (an @): put the credentials in the credentials Secret and give only http(s)://host[:port]", where)
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		return "", false, fmt.Errorf("s3 endpoint %q: want http(s)://host[:port]", endpoint)
	}
	return u.Host, u.Scheme == "http", nil
}
