package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type keyDoc struct {
	ID      string  `json:"id"`
	Current bool    `json:"current"`
	User    *string `json:"user"`
	Host    *string `json:"host"`
	Created *string `json:"created"`
}

func listKeys(t *testing.T, args ...string) []keyDoc {
	t.Helper()
	var keys []keyDoc
	out := mustStraddle(t, append([]string{"repo", "key", "list", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatalf("key list --json: %v\n%s", err, out)
	}
	return keys
}

func currentKey(t *testing.T, keys []keyDoc) string {
	t.Helper()
	current := ""
	for _, k := range keys {
		if k.User == nil || k.Host == nil || k.Created == nil {
			t.Errorf("key list --json entry lacks a field: %+v", k)
		}
		if k.Current {
			if current != "" {
				t.Fatalf("two current keys: %+v", keys)
			}
			current = k.ID
		}
	}
	return current
}

func TestRepoKeyAddListRemove(t *testing.T) {
	base := t.TempDir()
	repoDir := filepath.Join(base, "repo")
	t.Setenv("STRADDLE_PASSWORD", "first")
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	firstKey := currentKey(t, listKeys(t, "--repo", repoDir))

	newPw := filepath.Join(base, "new-pw")
	if err := os.WriteFile(newPw, []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustStraddle(t, "repo", "key", "add", "--repo", repoDir, "--new-password-file", newPw)
	if !strings.HasPrefix(out, "added key ") {
		t.Fatalf("key add: %q", out)
	}
	secondShort := strings.TrimSpace(strings.TrimPrefix(out, "added key "))

	// Both passwords open the repository, and each marks its own key as current.
	keys := listKeys(t, "--repo", repoDir)
	if len(keys) != 2 || currentKey(t, keys) != firstKey {
		t.Fatalf("with the first password: %+v", keys)
	}
	t.Setenv("STRADDLE_PASSWORD", "second")
	keys = listKeys(t, "--repo", repoDir)
	secondKey := currentKey(t, keys)
	if secondKey == firstKey || !strings.HasPrefix(secondKey, secondShort) {
		t.Fatalf("with the second password the current key is %s (added %s, first %s)", secondKey, secondShort, firstKey)
	}
	table := mustStraddle(t, "repo", "key", "list", "--repo", repoDir)
	if !strings.Contains(table, "*  "+secondKey[:8]) || strings.Contains(table, "*  "+firstKey[:8]) || !strings.Contains(table, "CREATED") {
		t.Errorf("key list marks the wrong key:\n%s", table)
	}

	// A key from the environment, then remove it by prefix.
	t.Setenv("STRADDLE_NEW_PASSWORD", "third")
	thirdShort := strings.TrimSpace(strings.TrimPrefix(mustStraddle(t, "repo", "key", "add", "--repo", repoDir), "added key "))
	t.Setenv("STRADDLE_NEW_PASSWORD", "")
	if n := len(listKeys(t, "--repo", repoDir, "--password-file", writeFile(t, base, "third"))); n != 3 {
		t.Fatalf("%d keys after the third add", n)
	}
	mustStraddle(t, "repo", "key", "remove", thirdShort[:6], "--repo", repoDir)
	if _, err := straddle(t, "repo", "key", "list", "--repo", repoDir, "--password-file", writeFile(t, base, "third")); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("a removed key still opens: %v", err)
	}

	// The key in use cannot go; another one can.
	_, err := straddle(t, "repo", "key", "remove", secondKey[:8], "--repo", repoDir)
	if err == nil || !strings.Contains(err.Error(), "it is the key this password opened") {
		t.Fatalf("removing the key in use: %v", err)
	}
	mustStraddle(t, "repo", "key", "remove", firstKey, "--repo", repoDir)
	// Now the remaining key is both in use and the last: the message says it is the last.
	_, err = straddle(t, "repo", "key", "remove", secondKey, "--repo", repoDir)
	if err == nil || !strings.Contains(err.Error(), "no other key would open the repository") {
		t.Fatalf("removing the last key: %v", err)
	}
	for _, tc := range []struct {
		ref, want string
	}{
		{"ab", "not a key ID"},
		{strings.Repeat("0", 64), "no key with ID"},
	} {
		if _, err := straddle(t, "repo", "key", "remove", tc.ref, "--repo", repoDir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("key remove %s: %v", tc.ref, err)
		}
	}
	if keys := listKeys(t, "--repo", repoDir); len(keys) != 1 || keys[0].ID != secondKey {
		t.Fatalf("keys at the end: %+v", keys)
	}
}

func TestRepoKeyPasswd(t *testing.T) {
	base := t.TempDir()
	repoDir := filepath.Join(base, "repo")
	t.Setenv("STRADDLE_PASSWORD", "old")
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	oldKey := currentKey(t, listKeys(t, "--repo", repoDir))

	out := mustStraddle(t, "repo", "key", "passwd", "--repo", repoDir, "--new-password-file", writeFile(t, base, "new"))
	if !strings.Contains(out, "replaces key "+oldKey[:8]) {
		t.Errorf("key passwd: %q", out)
	}
	_, err := straddle(t, "repo", "snapshots", "--repo", repoDir)
	if err == nil || !strings.Contains(err.Error(), "wrong password for the repository") {
		t.Fatalf("the old password after passwd: %v", err)
	}
	t.Setenv("STRADDLE_PASSWORD", "new")
	keys := listKeys(t, "--repo", repoDir)
	if len(keys) != 1 || keys[0].ID == oldKey || !keys[0].Current {
		t.Fatalf("keys after passwd: %+v", keys)
	}
	mustStraddle(t, "repo", "snapshots", "--repo", repoDir)
}

func TestRepoKeyNewPasswordSources(t *testing.T) {
	base := t.TempDir()
	repoDir := filepath.Join(base, "repo")
	t.Setenv("STRADDLE_PASSWORD", "pw")
	t.Setenv("STRADDLE_NEW_PASSWORD", "")
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	f := &repoFlags{repo: repoDir}
	ctx := context.Background()

	// No file, no environment and no terminal: a clear error, nothing added.
	add := &repoKeyAddOptions{repoFlags: f}
	if err := add.run(ctx, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "STRADDLE_NEW_PASSWORD") {
		t.Fatalf("no new password: %v", err)
	}
	// A prompt answered differently twice changes nothing.
	answers := []string{"one", "two"}
	passwd := &repoKeyPasswdOptions{repoFlags: f}
	passwd.newPassword.prompt = func(string) ([]byte, error) {
		a := answers[0]
		answers = answers[1:]
		return []byte(a), nil
	}
	if err := passwd.run(ctx, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Fatalf("differing passwords: %v", err)
	}
	passwd.newPassword.prompt = func(string) ([]byte, error) { return nil, errors.New("ctrl-d") }
	if err := passwd.run(ctx, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "ctrl-d") {
		t.Fatalf("a failing prompt: %v", err)
	}
	if _, err := straddle(t, "repo", "key", "add", "--repo", repoDir, "--new-password-file", writeFile(t, base, "")); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("an empty new password file: %v", err)
	}
	if keys := listKeys(t, "--repo", repoDir); len(keys) != 1 {
		t.Fatalf("%d keys after refused changes", len(keys))
	}
	// The same prompt answered twice alike switches the password.
	passwd.newPassword.prompt = func(string) ([]byte, error) { return []byte("prompted"), nil }
	if err := passwd.run(ctx, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STRADDLE_PASSWORD", "prompted")
	mustStraddle(t, "repo", "snapshots", "--repo", repoDir)
}

// writeFile writes content to a new file under dir and returns its path.
func writeFile(t *testing.T, dir, content string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "pw-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}
