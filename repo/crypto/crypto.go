// Package crypto seals repository objects with AES-256-GCM, derives blob IDs with a keyed hash, and protects
// the master keys with a memory-hard password KDF.
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/minio/sha256-simd"

	"github.com/straddle-io/straddle/repo/id"
)

const (
	nonceSize = 12
	tagSize   = 16
	// Overhead is how many bytes sealing adds to a plaintext.
	Overhead = nonceSize + tagSize
	// KeySize is the length of each master key.
	KeySize = 32
)

// ErrAuth means sealed data failed authentication: a wrong key, or bytes changed in storage.
var ErrAuth = errors.New("authentication failed")

// MasterKeys is the secret material of a repository, stored sealed in every key file.
type MasterKeys struct {
	// Seal encrypts and authenticates every object.
	Seal [KeySize]byte `json:"seal"`
	// ID keys the HMAC that names blobs, so storage cannot test for known plaintext.
	ID [KeySize]byte `json:"id"`
}

// NewMasterKeys draws fresh random master keys.
func NewMasterKeys() MasterKeys {
	var mk MasterKeys
	_, _ = rand.Read(mk.Seal[:])
	_, _ = rand.Read(mk.ID[:])
	return mk
}

// Key seals and opens data and computes blob IDs. It is safe for concurrent use.
type Key struct {
	aead  cipher.AEAD
	macs  sync.Pool
	idKey []byte
}

// NewKey prepares the ciphers for a set of master keys.
func NewKey(mk MasterKeys) (*Key, error) {
	aead, err := newAEAD(mk.Seal[:])
	if err != nil {
		return nil, err
	}
	k := &Key{aead: aead, idKey: append([]byte(nil), mk.ID[:]...)}
	k.macs.New = func() any { return hmac.New(sha256.New, k.idKey) }
	return k, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// Seal appends nonce || ciphertext || tag of plaintext to dst. The additional data binds the object's kind,
// so a sealed index cannot be passed off as a snapshot.
func (k *Key) Seal(dst, plaintext, ad []byte) []byte {
	return sealWith(k.aead, dst, plaintext, ad)
}

// Open authenticates and decrypts sealed (as made by Seal) and appends the plaintext to dst.
func (k *Key) Open(dst, sealed, ad []byte) ([]byte, error) {
	return openWith(k.aead, dst, sealed, ad)
}

func sealWith(aead cipher.AEAD, dst, plaintext, ad []byte) []byte {
	var nonce [nonceSize]byte
	_, _ = rand.Read(nonce[:])
	dst = append(dst, nonce[:]...)
	return aead.Seal(dst, nonce[:], plaintext, ad)
}

func openWith(aead cipher.AEAD, dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("sealed data of %d bytes is shorter than its %d-byte overhead: %w", len(sealed), Overhead, ErrAuth)
	}
	out, err := aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], ad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// BlobID returns HMAC-SHA256(ID key, data): the name of a blob with this plaintext.
func (k *Key) BlobID(data []byte) id.ID {
	m := k.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(data)
	var out id.ID
	m.Sum(out[:0])
	k.macs.Put(m)
	return out
}
