package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/location"
)

func TestOpenWrapsStorageInRetries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := (&repoFlags{}).openStorage(context.Background(), location.Location{Scheme: "file", Path: dir}, true)
	if err != nil {
		t.Fatal(err)
	}
	repotest.Init(t, be)
	t.Setenv("STRADDLE_PASSWORD", repotest.Password)
	r, err := (&repoFlags{repo: dir}).open(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := storage.Retries(r.Backend()); !ok {
		t.Fatalf("the repository's backend %T does not retry", r.Backend())
	}
}

func TestBackupSummaryPrintsRetriesWhenThereWereSome(t *testing.T) {
	for _, n := range []uint64{0, 5} {
		var out bytes.Buffer
		res := &backup.Result{Snapshot: &snapshot.Snapshot{}, Summary: snapshot.Summary{StorageRetries: n}}
		printBackupSummary(&out, res, nil)
		printed := strings.Contains(out.String(), "5 requests retried")
		if printed != (n > 0) || (n == 0 && strings.Contains(out.String(), "retried")) {
			t.Fatalf("%d retries printed as:\n%s", n, out.String())
		}
	}
}
