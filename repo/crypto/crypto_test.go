package crypto

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestSealOpen(t *testing.T) {
	k, err := NewKey(NewMasterKeys())
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("the data in pods")
	sealed := k.Seal(nil, plain, []byte("blob"))
	if len(sealed) != len(plain)+Overhead {
		t.Fatalf("sealed length %d, want %d", len(sealed), len(plain)+Overhead)
	}
	got, err := k.Open(nil, sealed, []byte("blob"))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open(nil, sealed, []byte("index")); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong additional data: err = %v, want ErrAuth", err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 1
		if _, err := k.Open(nil, bad, []byte("blob")); !errors.Is(err, ErrAuth) {
			t.Fatalf("flipped byte %d: err = %v, want ErrAuth", i, err)
		}
	}
	if _, err := k.Open(nil, sealed[:5], nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("truncated: err = %v", err)
	}
}

func TestBlobIDIsKeyed(t *testing.T) {
	a, _ := NewKey(NewMasterKeys())
	b, _ := NewKey(NewMasterKeys())
	data := []byte("known file")
	if first, again := a.BlobID(data), a.BlobID(bytes.Clone(data)); first != again {
		t.Fatal("blob ID not deterministic")
	}
	if a.BlobID(data) == b.BlobID(data) {
		t.Fatal("two repositories give the same blob ID: the ID is not keyed")
	}
}

func TestKeyFile(t *testing.T) {
	mk := NewMasterKeys()
	buf, err := NewKeyFile(mk, []byte("secret"), TestKDF, time.Unix(0, 0), "h", "u")
	if err != nil {
		t.Fatal(err)
	}
	kf, err := ParseKeyFile(buf)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kf.Open([]byte("secret"))
	if err != nil || got != mk {
		t.Fatalf("Open with right password: %v", err)
	}
	if _, err := kf.Open([]byte("wrong")); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong password: err = %v, want ErrAuth", err)
	}
	if _, err := NewKeyFile(mk, nil, TestKDF, time.Now(), "", ""); err == nil {
		t.Fatal("empty password accepted")
	}
}

func TestParseKeyFileRejectsHugeCosts(t *testing.T) {
	for _, p := range []KDFParams{
		{Algorithm: "argon2id", Time: 1, MemoryKiB: 1 << 31, Threads: 1},
		{Algorithm: "argon2id", Time: 1000, MemoryKiB: 64, Threads: 1},
		{Algorithm: "scrypt", Time: 1, MemoryKiB: 64, Threads: 1},
		{Algorithm: "argon2id", Time: 1, MemoryKiB: 64, Threads: 0},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

func FuzzParseKeyFile(f *testing.F) {
	buf, _ := NewKeyFile(NewMasterKeys(), []byte("pw"), TestKDF, time.Unix(0, 0), "", "")
	f.Add(buf)
	f.Add([]byte(`{"kdf":{"algorithm":"argon2id","time":1,"memory_kib":64,"threads":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := ParseKeyFile(data)
		// Valid but expensive parameters would only make the fuzzer slow, not find bugs.
		if err != nil || kf.KDF.MemoryKiB > 1024 || kf.KDF.Time > 2 {
			return
		}
		_, _ = kf.Open([]byte("pw"))
	})
}
