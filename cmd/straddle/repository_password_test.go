package main

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func testLocation(name, secret string) *v1.BackupStorageLocation {
	loc := &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: name},
		Spec: v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: "/srv"}}}
	if secret != "" {
		loc.Spec.RepositoryPasswordSecret = &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}
	}
	return loc
}

func TestPasswordGroupsJoinLocationsSharingASecret(t *testing.T) {
	cl := scheduleTestClient(t, testLocation("a", "pw"), testLocation("b", "pw"), testLocation("c", "other"), testLocation("bare", ""))
	ctx := context.Background()
	groups, err := passwordGroups(ctx, cl, "straddle", "")
	if err != nil || len(groups) != 2 || groups[0].String() != "Secret pw (storage locations a, b)" || groups[1].String() != "Secret other (storage locations c)" {
		t.Fatalf("every location: %v, %v", groups, err)
	}
	if groups[0].key != "password" {
		t.Errorf("key %q, want the default password", groups[0].key)
	}
	// One location brings the others sharing its Secret: the Secret changes for all of them.
	if groups, err := passwordGroups(ctx, cl, "straddle", "b"); err != nil || len(groups) != 1 || groups[0].String() != "Secret pw (storage locations a, b)" {
		t.Fatalf("--storage-location b: %v, %v", groups, err)
	}
	for only, want := range map[string]string{
		"nowhere": "there is no storage location nowhere in namespace straddle",
		"bare":    "storage location bare names no repositoryPasswordSecret",
	} {
		if _, err := passwordGroups(ctx, cl, "straddle", only); err == nil || err.Error() != want {
			t.Errorf("--storage-location %s: %v, want %q", only, err, want)
		}
	}
	if _, err := passwordGroups(ctx, scheduleTestClient(t), "straddle", ""); err == nil || !strings.Contains(err.Error(), "there is nothing to rotate") {
		t.Errorf("no location: %v", err)
	}
}

func TestPasswordRotateRequest(t *testing.T) {
	ctx := context.Background()
	secret := func(data map[string]string) *corev1.Secret {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: "pw"}, Data: map[string][]byte{}}
		for k, v := range data {
			sec.Data[k] = []byte(v)
		}
		return sec
	}
	for _, tc := range []struct {
		name      string
		data      map[string]string
		given     string
		err       string
		generated bool
		// next is the password expected under password.next afterwards ("" for none, "*" for any).
		next string
	}{
		{name: "generated", data: map[string]string{"password": "old"}, generated: true, next: "*"},
		{name: "given", data: map[string]string{"password": "old"}, given: "new", next: "new"},
		{name: "the same as now", data: map[string]string{"password": "old"}, given: "old", err: "the new password is the one Secret straddle/pw holds already"},
		{name: "another under way", data: map[string]string{"password": "old", "password.next": "other"}, given: "new", err: "a rotation of Secret straddle/pw to another password is under way"},
		{name: "the same under way", data: map[string]string{"password": "old", "password.next": "new"}, given: "new", next: "new"},
		{name: "waiting again", data: map[string]string{"password": "old", "password.next": "other"}, next: "other"},
		{name: "removing old keys, with a file", data: map[string]string{"password": "new", "password.previous": "old"}, given: "newer", err: "the previous rotation of Secret straddle/pw is still removing"},
		{name: "removing old keys, waiting again", data: map[string]string{"password": "new", "password.previous": "old"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := testLocation("a", "pw")
			loc.Annotations = map[string]string{v1.PasswordRotationAnnotation: "earlier"}
			cl := scheduleTestClient(t, loc, secret(tc.data))
			o := &passwordRotateOptions{backupFlags: &backupFlags{namespace: "straddle"}}
			g := &passwordGroup{secret: "pw", key: "password", locations: []string{"a"}}
			var given []byte
			if tc.given != "" {
				given = []byte(tc.given)
			}
			generated, err := o.request(ctx, cl, g, given)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || generated != tc.generated {
				t.Fatalf("request = %v, %v; want generated %v", generated, err, tc.generated)
			}
			var sec corev1.Secret
			if err := cl.Get(ctx, client.ObjectKey{Namespace: "straddle", Name: "pw"}, &sec); err != nil {
				t.Fatal(err)
			}
			next := string(sec.Data["password.next"])
			if tc.next == "*" && len(next) < 43 || tc.next != "*" && next != tc.next {
				t.Errorf("password.next %q, want %q", next, tc.next)
			}
			if err := cl.Get(ctx, client.ObjectKeyFromObject(loc), loc); err != nil {
				t.Fatal(err)
			}
			// A new rotation is a new request; one under way keeps the request the locations carry.
			resumed := tc.data["password.next"] != "" || tc.data["password.previous"] != ""
			if got := loc.Annotations[v1.PasswordRotationAnnotation]; got != g.request || (got == "earlier") != resumed {
				t.Errorf("request %q on the location, %q in the group; resumed %v", got, g.request, resumed)
			}
		})
	}
}
