package check_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/check"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/mem"
)

func setup(t *testing.T) (*repo.Repository, *mem.Backend) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 7, Files: 40, Big: 3 << 20})
	r, be := repotest.New(t)
	if _, err := backup.Run(context.Background(), r, backup.Options{Path: src}); err != nil {
		t.Fatal(err)
	}
	return repotest.Reopen(t, be), be
}

func run(t *testing.T, r *repo.Repository, opts check.Options) *check.Result {
	t.Helper()
	res, err := check.Run(context.Background(), r, opts)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	return res
}

func TestCleanRepository(t *testing.T) {
	r, _ := setup(t)
	res := run(t, r, check.Options{ReadData: true})
	if !res.OK() || len(res.Notes) != 0 {
		t.Fatalf("clean repository: errors %v, notes %v", res.Errors, res.Notes)
	}
	if res.PacksRead != res.Packs || res.BlobsVerify == 0 || res.Snapshots != 1 {
		t.Fatalf("read %d of %d packs, verified %d blobs, %d snapshots", res.PacksRead, res.Packs, res.BlobsVerify, res.Snapshots)
	}
	sub := run(t, r, check.Options{ReadDataSubset: 0.5})
	if !sub.OK() || sub.PacksRead == 0 || sub.PacksRead >= sub.Packs {
		t.Fatalf("50%% subset read %d of %d packs: %v", sub.PacksRead, sub.Packs, sub.Errors)
	}
}

func firstDataPack(t *testing.T, r *repo.Repository) id.ID {
	t.Helper()
	var found id.ID
	r.Index().Each(func(bt pack.BlobType, _ id.ID, e index.Entry) bool {
		if bt == pack.DataBlob {
			found = e.Pack
			return false
		}
		return true
	})
	if found.IsNull() {
		t.Fatal("no data pack")
	}
	return found
}

func TestFindsDamage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		damage   func(be *mem.Backend, p id.ID)
		readData bool
		want     string
	}{
		{"flipped byte", func(be *mem.Backend, p id.ID) {
			_ = be.Mutate(pack.Name(p), func(b []byte) []byte { b[10] ^= 1; return b })
		}, true, "authentication failed"},
		{"truncated", func(be *mem.Backend, p id.ID) {
			_ = be.Mutate(pack.Name(p), func(b []byte) []byte { return b[:len(b)-100] })
		}, false, "corrupt"},
		{"deleted", func(be *mem.Backend, p id.ID) { _ = be.Delete(context.Background(), pack.Name(p)) }, false, "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, be := setup(t)
			p := firstDataPack(t, r)
			tc.damage(be, p)
			res := run(t, repotest.Reopen(t, be), check.Options{ReadData: tc.readData})
			if res.OK() {
				t.Fatal("check found nothing wrong")
			}
			all := ""
			for _, e := range res.Errors {
				all += e.String() + "\n"
			}
			if !strings.Contains(all, tc.want) || !strings.Contains(all, p.String()[:8]) {
				t.Fatalf("errors do not name the damage (%q) and pack %s:\n%s", tc.want, p.Short(), all)
			}
		})
	}
}

func TestUnreferencedPackIsANote(t *testing.T) {
	r, be := setup(t)
	// What an interrupted backup leaves: a stored pack no index lists.
	w := pack.NewWriter(nil)
	plain := []byte("orphan")
	w.Add(pack.DataBlob, r.BlobID(plain), r.Key().Seal(nil, plain, nil), len(plain))
	data, pid, _ := w.Finish(r.Key())
	if err := storage.PutBytes(context.Background(), be, pack.Name(pid), data); err != nil {
		t.Fatal(err)
	}
	res := run(t, r, check.Options{})
	if !res.OK() || len(res.Notes) != 1 || !strings.Contains(res.Notes[0].Object, pid.String()) {
		t.Fatalf("errors %v, notes %v", res.Errors, res.Notes)
	}
}
