package bsl

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func TestParseCredentialsFile(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       awsCredentials
		err        string
	}{
		{"default", "[default]\naws_access_key_id = AK\naws_secret_access_key=SK\n", awsCredentials{"AK", "SK", ""}, ""},
		{"default among others", "# comment\n[other]\naws_access_key_id=X\naws_secret_access_key=Y\n\n[default]\nAWS_ACCESS_KEY_ID = AK\naws_secret_access_key = SK\naws_session_token = T\n", awsCredentials{"AK", "SK", "T"}, ""},
		{"only profile", "[profile backups]\naws_access_key_id=AK\naws_secret_access_key=SK\n", awsCredentials{"AK", "SK", ""}, ""},
		{"two profiles, no default", "[a]\naws_access_key_id=1\naws_secret_access_key=2\n[b]\naws_access_key_id=3\naws_secret_access_key=4\n", awsCredentials{}, "none is [default]"},
		{"no secret key", "[default]\naws_access_key_id=AK\n", awsCredentials{}, "lacks"},
		{"key outside a profile", "aws_access_key_id=AK\n", awsCredentials{}, "line 1"},
		{"garbage line", "[default]\nthis is not it\n", awsCredentials{}, "line 2"},
		{"empty", "", awsCredentials{}, "0 profiles"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCredentialsFile([]byte(tc.file))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "AK") {
					t.Fatalf("error %q repeats a key", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestS3OptionsFromLocationAndSecret(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	secrets := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "file", Namespace: "straddle"},
			Data: map[string][]byte{"cloud": []byte("[default]\naws_access_key_id=FILEKEY\naws_secret_access_key=FILESECRET\n")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "keys", Namespace: "straddle"},
			Data: map[string][]byte{"AWS_ACCESS_KEY_ID": []byte("ENVKEY"), "AWS_SECRET_ACCESS_KEY": []byte("ENVSECRET")}},
	).Build()
	sel := func(name, key string) *corev1.SecretKeySelector {
		return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}
	}
	loc := func(s3 v1.S3Location) *v1.BackupStorageLocation {
		return &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "l", Namespace: "straddle"}, Spec: v1.BackupStorageLocationSpec{Provider: "s3", S3: &s3}}
	}
	ctx := context.Background()

	o, err := S3Options(ctx, secrets, loc(v1.S3Location{Endpoint: "http://minio.straddle:9000/", Bucket: "b", Prefix: "p", Region: "r", ForcePathStyle: true, CredentialsSecret: sel("file", "cloud")}))
	if err != nil {
		t.Fatal(err)
	}
	if o.Endpoint != "minio.straddle:9000" || !o.PlainHTTP || o.Bucket != "b" || o.Prefix != "p" || o.Region != "r" || o.BucketLookup != "path" ||
		o.AccessKeyID != "FILEKEY" || o.SecretAccessKey != "FILESECRET" {
		t.Fatalf("options %+v", o)
	}
	o, err = S3Options(ctx, secrets, loc(v1.S3Location{Endpoint: "https://s3.example", Bucket: "b", CredentialsSecret: sel("keys", "cloud")}))
	if err != nil {
		t.Fatal(err)
	}
	if o.PlainHTTP || o.BucketLookup != "" || o.AccessKeyID != "ENVKEY" || o.SecretAccessKey != "ENVSECRET" {
		t.Fatalf("options %+v", o)
	}
	_, err = S3Options(ctx, secrets, loc(v1.S3Location{Endpoint: "https://s3.example", Bucket: "b", CredentialsSecret: sel("file", "other")}))
	if err == nil || !strings.Contains(err.Error(), `has no key "other"`) {
		t.Fatalf("missing key: %v", err)
	}
}

// An endpoint with credentials in it is refused, and the refusal (which lands in the location's status) does
// not repeat them.
func TestS3EndpointWithCredentialsIsRefusedWithoutThem(t *testing.T) {
	for _, ep := range []string{"https://AKID:SECRETKEY@minio.example:9000", "http://SECRETKEY@minio.example", "http://AKID:SECRET%zzKEY@minio.example"} {
		_, err := S3Options(context.Background(), nil, &v1.BackupStorageLocation{Spec: v1.BackupStorageLocationSpec{Provider: "s3",
			S3: &v1.S3Location{Endpoint: ep, Bucket: "b"}}})
		if err == nil || !strings.Contains(err.Error(), "carries a user name or password") || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "AKID") {
			t.Errorf("endpoint %s: %v", ep, err)
		}
	}
}
