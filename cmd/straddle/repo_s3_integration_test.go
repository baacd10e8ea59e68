//go:build integration

package main

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
)

func TestRepoCommandsOnS3(t *testing.T) {
	srv := miniotest.Start(t)
	srv.SetEnv(t)
	t.Setenv("STRADDLE_PASSWORD", "s3-cli-test")
	base := t.TempDir()
	src := filepath.Join(base, "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 21, Files: 25, Big: 3 << 20})
	// The bucket does not exist yet: init makes it.
	url := srv.URL("fresh-bucket", "team/repo")
	if out := mustStraddle(t, "repo", "init", "--repo", url, "--s3-bucket-lookup", "path", "--region", "us-east-1"); !strings.Contains(out, url) {
		t.Errorf("init output does not name %s:\n%s", url, out)
	}

	var backup map[string]any
	if err := json.Unmarshal([]byte(mustStraddle(t, "repo", "backup", src, "--repo", url, "--host", "node-a", "--json")), &backup); err != nil {
		t.Fatal(err)
	}
	if backup["files_new"].(float64) == 0 || backup["bytes_stored"].(float64) == 0 {
		t.Fatalf("backup stored nothing: %v", backup)
	}
	var snaps []map[string]any
	if err := json.Unmarshal([]byte(mustStraddle(t, "repo", "snapshots", "--repo", url, "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0]["id"] != backup["snapshot_id"] || snaps[0]["host"] != "node-a" {
		t.Fatalf("snapshots --json = %v; want the one backup %v", snaps, backup["snapshot_id"])
	}
	target := filepath.Join(base, "restored")
	mustStraddle(t, "repo", "restore", "latest", "--repo", url, "--target", target)
	repotest.CompareTrees(t, src, target)
	var chk map[string]any
	if err := json.Unmarshal([]byte(mustStraddle(t, "repo", "check", "--repo", url, "--read-data", "--json")), &chk); err != nil {
		t.Fatal(err)
	}
	if chk["ok"] != true || chk["packs_read"].(float64) == 0 {
		t.Errorf("check --read-data --json: %v", chk)
	}

	// The same bucket under another prefix is another, empty place.
	if _, err := straddle(t, "repo", "snapshots", "--repo", srv.URL("fresh-bucket", "team")); err == nil || !strings.Contains(err.Error(), "there is no repository") {
		t.Errorf("snapshots of the parent prefix: %v", err)
	}
	if _, err := straddle(t, "repo", "init", "--repo", url); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second init: %v", err)
	}
}

func TestRepoOnS3ErrorsAreOneClearSentence(t *testing.T) {
	srv := miniotest.Start(t)
	srv.SetEnv(t)
	t.Setenv("STRADDLE_PASSWORD", "pw")
	url := srv.URL(srv.NewBucket(t), "r")
	mustStraddle(t, "repo", "init", "--repo", url)

	const secret = "wrong-secret-0123456789"
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	for _, args := range [][]string{
		{"repo", "snapshots", "--repo", url},
		{"repo", "init", "--repo", srv.URL("other-bucket", "")},
	} {
		_, err := straddle(t, args...)
		if !errors.Is(err, storage.ErrPermission) {
			t.Errorf("straddle %v with a wrong secret: %v; want ErrPermission", args, err)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || strings.Contains(msg, secret) || !strings.Contains(msg, "check the storage credentials") || !strings.Contains(msg, "AWS_ACCESS_KEY_ID") {
			t.Errorf("straddle %v: %q; want one line of advice without the secret", args, msg)
		}
	}

	srv.SetEnv(t)
	if _, err := straddle(t, "repo", "snapshots", "--repo", srv.URL("missing-bucket", "r")); err == nil || !strings.Contains(err.Error(), "there is no repository") || !strings.Contains(err.Error(), "missing-bucket") {
		t.Errorf("snapshots in a missing bucket: %v", err)
	}
	if _, err := straddle(t, "repo", "snapshots", "--repo", url, "--s3-bucket-lookup", "virtual"); err == nil || !strings.Contains(err.Error(), "auto, path or dns") {
		t.Errorf("bad --s3-bucket-lookup: %v", err)
	}
}

func TestRepoOnS3OverTLS(t *testing.T) {
	srv := miniotest.StartTLS(t)
	srv.SetEnv(t)
	t.Setenv("STRADDLE_PASSWORD", "pw")
	url := srv.URL(srv.NewBucket(t), "r")
	if !strings.HasPrefix(url, "s3://") {
		t.Fatalf("URL of a TLS server = %s", url)
	}

	_, err := straddle(t, "repo", "init", "--repo", url)
	if err == nil || !strings.Contains(err.Error(), "certificate is not trusted") || !strings.Contains(err.Error(), "--cacert") {
		t.Fatalf("init without --cacert: %v; want an untrusted certificate and the flag that helps", err)
	}
	mustStraddle(t, "repo", "init", "--repo", url, "--cacert", srv.CACertFile)
	mustStraddle(t, "repo", "snapshots", "--repo", url, "--cacert", srv.CACertFile)
	mustStraddle(t, "repo", "snapshots", "--repo", url, "--insecure-tls")
}
