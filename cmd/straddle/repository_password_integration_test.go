//go:build integration

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/deploy"
	"github.com/straddle-io/straddle/repo"
)

func installedPassword(t *testing.T, cl client.Client, ns string) string {
	t.Helper()
	var sec corev1.Secret
	if err := cl.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: deploy.RepositoryPasswordSecret}, &sec); err != nil {
		t.Fatalf("read the password Secret of %s: %v", ns, err)
	}
	return string(sec.Data[deploy.RepositoryPasswordKey])
}

// Two installs without a password file get different random passwords; an install over an install keeps the
// password it finds, and refuses another one.
func TestInstallsMakeTheirOwnPasswordsAndKeepThem(t *testing.T) {
	kc, cl := controlPlane(t)
	install := func(ns string, more ...string) (string, error) {
		return straddle(t, append([]string{"install", "--kubeconfig", kc, "--namespace", ns, "--provider", "filesystem", "--path", "/srv/backups"}, more...)...)
	}
	passwords := map[string]string{}
	for _, ns := range []string{"install-a", "install-b"} {
		out, err := install(ns)
		if err != nil {
			t.Fatal(err)
		}
		want := "generated a random repository password in Secret " + ns + "/straddle-repository-password; save it now (kubectl -n " + ns + " get secret straddle-repository-password -o jsonpath='{.data.password}' | base64 -d) and pass it with --repository-password-file"
		if !strings.Contains(out, want) {
			t.Fatalf("install said %q, want the line %q", out, want)
		}
		pw := installedPassword(t, cl, ns)
		if len(pw) < 43 || strings.Contains(out, pw) {
			t.Fatalf("install of %s: password of %d characters, printed: %v", ns, len(pw), strings.Contains(out, pw))
		}
		passwords[ns] = pw
	}
	if passwords["install-a"] == passwords["install-b"] {
		t.Fatal("two installs made the same password")
	}

	out, err := install("install-a")
	if err != nil || !strings.Contains(out, "kept the repository password Secret install-a/straddle-repository-password already holds") || strings.Contains(out, "generated") {
		t.Fatalf("install again: %q, %v", out, err)
	}
	if installedPassword(t, cl, "install-a") != passwords["install-a"] {
		t.Fatal("installing again replaced the password, which locks every repository")
	}
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("another password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := install("install-a", "--repository-password-file", file); err == nil || !strings.Contains(err.Error(), "already holds another repository password") || strings.Contains(err.Error(), "another password") {
		t.Fatalf("install again with another password: %v", err)
	}
	if err := os.WriteFile(file, []byte(passwords["install-a"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := install("install-a", "--repository-password-file", file); err != nil {
		t.Fatalf("install again with the same password file: %v", err)
	}
}

// repository-password rotate against a real controller: the new password opens every repository of the
// location, the old one none, and the CLI says so.
func TestRepositoryPasswordRotateCommand(t *testing.T) {
	kc, cl := controlPlane(t)
	ctx := context.Background()
	ns, dir := "rotate", t.TempDir()
	if _, err := straddle(t, "install", "--kubeconfig", kc, "--namespace", ns, "--provider", "filesystem", "--path", dir); err != nil {
		t.Fatal(err)
	}
	var loc v1.BackupStorageLocation
	if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: deploy.DefaultLocationName}, &loc); err != nil {
		t.Fatal(err)
	}
	oldPw := installedPassword(t, cl, ns)
	for _, app := range []string{"shop", "db"} {
		be, err := bsl.OpenStorage(ctx, cl, &loc, bsl.RepositoryPath(app))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Init(ctx, be, []byte(oldPw), repo.InitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	opens := func(app, pw string) bool {
		t.Helper()
		be, err := bsl.OpenStorage(ctx, cl, &loc, bsl.RepositoryPath(app))
		if err != nil {
			t.Fatal(err)
		}
		_, err = repo.Open(ctx, be, []byte(pw), repo.OpenOptions{})
		if err != nil && !errors.Is(err, repo.ErrWrongPassword) {
			t.Fatal(err)
		}
		return err == nil
	}
	rotate := func(more ...string) (string, error) {
		return straddle(t, append([]string{"repository-password", "rotate", "--kubeconfig", kc, "-n", ns, "--timeout", "2m"}, more...)...)
	}
	if _, err := rotate("--storage-location", "nowhere"); err == nil || err.Error() != "there is no storage location nowhere in namespace rotate" {
		t.Fatalf("rotate of a location that is not there: %v", err)
	}
	runServer(t, "controller", "--kubeconfig", kc, "--namespace", ns, "--password-rotation-grace", "2s", "--backup-sync-period", "0")

	out, err := rotate()
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	for _, want := range []string{
		"rotating the repository password of Secret straddle-repository-password (storage locations default)",
		"storage location default: rotated; the new password opens 2 repositories (db, shop), the old one none",
		"generated a random new repository password in Secret rotate/straddle-repository-password; save it now (kubectl -n rotate get secret straddle-repository-password",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rotate printed %q, want the line %q", out, want)
		}
	}
	newPw := installedPassword(t, cl, ns)
	if newPw == oldPw || len(newPw) < 43 || strings.Contains(out, newPw) || strings.Contains(out, oldPw) {
		t.Fatalf("after rotate: the Secret's password changed %v, is %d long, printed %v", newPw != oldPw, len(newPw), strings.Contains(out, newPw))
	}
	for _, app := range []string{"shop", "db"} {
		if opens(app, oldPw) || !opens(app, newPw) {
			t.Errorf("repository %s: only the new password may open it", app)
		}
	}

	// A given password; the same one again is refused.
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("a chosen password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = rotate("--new-password-file", file, "--storage-location", "default")
	if err != nil || !strings.Contains(out, "the new repository password is in Secret rotate/straddle-repository-password; save it now") {
		t.Fatalf("rotate with a file: %v\n%s", err, out)
	}
	if !opens("shop", "a chosen password") || opens("shop", newPw) {
		t.Error("after the second rotation only the chosen password may open the repositories")
	}
	if _, err := rotate("--new-password-file", file); err == nil || !strings.Contains(err.Error(), "the new password is the one Secret rotate/straddle-repository-password holds already") {
		t.Fatalf("rotate to the password in use: %v", err)
	}
}
