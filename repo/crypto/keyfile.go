package crypto

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/argon2"
)

// KDFParams says how a password becomes the key that seals the master keys.
type KDFParams struct {
	Algorithm string `json:"algorithm"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF is OWASP's argon2id baseline of 19 MiB and two passes, with a third pass: each password guess
// stays expensive while every command (schedules run them every few minutes) starts quickly. Measured in a
// fresh process on two cores: 56 ms, against 140 ms for one pass over 64 MiB, most of which is page faults.
var DefaultKDF = KDFParams{Algorithm: "argon2id", Time: 3, MemoryKiB: 19 * 1024, Threads: 2}

// TestKDF is deliberately weak so tests can open repositories thousands of times.
var TestKDF = KDFParams{Algorithm: "argon2id", Time: 1, MemoryKiB: 64, Threads: 1}

// Bounds that a key file read from storage must respect, so a crafted file cannot make us allocate terabytes.
const (
	maxKDFMemoryKiB = 4 * 1024 * 1024
	maxKDFTime      = 64
	saltSize        = 32
)

// Validate rejects unknown algorithms and costs outside sane bounds.
func (p KDFParams) Validate() error {
	if p.Algorithm != "argon2id" {
		return fmt.Errorf("unsupported KDF %q", p.Algorithm)
	}
	if p.Time < 1 || p.Time > maxKDFTime {
		return fmt.Errorf("KDF time %d outside 1..%d", p.Time, maxKDFTime)
	}
	if p.Threads < 1 {
		return errors.New("KDF threads must be at least 1")
	}
	if p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB {
		return fmt.Errorf("KDF memory %d KiB outside %d..%d", p.MemoryKiB, 8*uint32(p.Threads), maxKDFMemoryKiB)
	}
	return nil
}

func (p KDFParams) derive(password, salt []byte) []byte {
	return argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
}

// KeyFile is a password's sealed copy of the master keys, stored as keys/<id>.
type KeyFile struct {
	Created  time.Time `json:"created"`
	Host     string    `json:"host,omitempty"`
	Username string    `json:"username,omitempty"`
	KDF      KDFParams `json:"kdf"`
	Salt     []byte    `json:"salt"`
	Data     []byte    `json:"data"`
}

var keyFileAD = []byte("straddle key file v1")

// NewKeyFile seals mk under password and returns the encoded key file.
func NewKeyFile(mk MasterKeys, password []byte, p KDFParams, now time.Time, host, user string) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(password) == 0 {
		return nil, errors.New("empty password")
	}
	salt := make([]byte, saltSize)
	_, _ = rand.Read(salt)
	aead, err := newAEAD(p.derive(password, salt))
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(mk)
	if err != nil {
		return nil, fmt.Errorf("encode master keys: %w", err)
	}
	kf := KeyFile{Created: now.UTC(), Host: host, Username: user, KDF: p, Salt: salt, Data: sealWith(aead, nil, plain, keyFileAD)}
	return json.Marshal(kf)
}

// ParseKeyFile decodes and validates a key file without trying any password.
func ParseKeyFile(buf []byte) (*KeyFile, error) {
	var kf KeyFile
	if err := json.Unmarshal(buf, &kf); err != nil {
		return nil, fmt.Errorf("decode key file: %w", err)
	}
	if err := kf.KDF.Validate(); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if len(kf.Salt) < 16 {
		return nil, fmt.Errorf("key file: salt of %d bytes is too short", len(kf.Salt))
	}
	return &kf, nil
}

// Open derives the password's key and unseals the master keys; ErrAuth means a wrong password.
func (kf *KeyFile) Open(password []byte) (MasterKeys, error) {
	var mk MasterKeys
	aead, err := newAEAD(kf.KDF.derive(password, kf.Salt))
	if err != nil {
		return mk, err
	}
	plain, err := openWith(aead, nil, kf.Data, keyFileAD)
	if err != nil {
		return mk, err
	}
	if err := json.Unmarshal(plain, &mk); err != nil {
		return mk, fmt.Errorf("decode master keys: %w", err)
	}
	return mk, nil
}
