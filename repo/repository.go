package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/restic/chunker"

	"github.com/straddle-io/straddle/repo/compress"
	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/storage"
)

// FormatVersion is the repository format this code writes and reads.
const FormatVersion = 1

// configMagic starts the config object in plaintext, so a future format or a foreign file is recognised
// before any key is tried.
const configMagic = "STRADDLE"

var configAD = []byte("straddle config v1")

// Chunk size bounds: content-defined chunks of 512 KiB to 8 MiB, 1 MiB on average.
const (
	MinChunkSize = 512 << 10
	MaxChunkSize = 8 << 20
)

// DefaultPackSize is the size a pack is closed at.
const DefaultPackSize = 16 << 20

// Config is the sealed, immutable description of a repository.
type Config struct {
	Version     int         `json:"version"`
	ID          id.ID       `json:"id"`
	Polynomial  chunker.Pol `json:"chunker_polynomial"`
	PackSize    int         `json:"pack_size"`
	Compression string      `json:"compression"`
	Created     time.Time   `json:"created"`
}

// InitOptions chooses a new repository's parameters; zero values mean defaults.
type InitOptions struct {
	KDF         crypto.KDFParams
	PackSize    int
	Compression compress.Level
	// Now is the creation time; tests set it, nil means time.Now.
	Now func() time.Time
}

// Repository is an opened repository. Its methods are safe for concurrent use.
type Repository struct {
	be    storage.Backend
	mk    crypto.MasterKeys
	key   *crypto.Key
	cfg   Config
	codec *compress.Codec
	idx   *index.Index
	// indexFiles are the index files loaded, for check and prune.
	indexFiles []id.ID
	// paging bounds the index's memory (SetIndexPaging).
	paging index.Paging
	// snapCache keeps sealed snapshots locally (UseCacheDir).
	snapCache snapshotCache
	now       func() time.Time

	// keyMu guards keyID, which a password change moves to the new key.
	keyMu sync.Mutex
	// keyID names the key file that opened the repository (or that Init wrote), so key removal can refuse it.
	keyID id.ID

	// trees holds whole tree packs read by LoadTree.
	trees treeCache
}

// Init creates a repository: fresh master keys, a random chunker polynomial, a config and one key file.
func Init(ctx context.Context, be storage.Backend, password []byte, opts InitOptions) (*Repository, error) {
	if _, err := be.Stat(ctx, "config"); err == nil {
		return nil, fmt.Errorf("init %s: %w", be.Location(), ErrExists)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("init %s: %w", be.Location(), err)
	}
	if opts.KDF == (crypto.KDFParams{}) {
		opts.KDF = crypto.DefaultKDF
	}
	if opts.PackSize == 0 {
		opts.PackSize = DefaultPackSize
	}
	if opts.PackSize < 1<<20 || opts.PackSize > 256<<20 {
		return nil, fmt.Errorf("pack size %d outside 1 MiB..256 MiB", opts.PackSize)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return nil, fmt.Errorf("choose chunker polynomial: %w", err)
	}
	mk := crypto.NewMasterKeys()
	cfg := Config{Version: FormatVersion, ID: id.Random(), Polynomial: pol, PackSize: opts.PackSize,
		Compression: opts.Compression.String(), Created: opts.Now().UTC()}
	r, err := newRepository(be, mk, cfg, opts.Now)
	if err != nil {
		return nil, err
	}
	// The key goes first: a config without a key is unusable, a key without a config is just ignored.
	kid, err := r.AddKey(ctx, password, opts.KDF)
	if err != nil {
		return nil, err
	}
	r.keyID = kid
	plain, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	obj := append([]byte(configMagic), FormatVersion)
	obj = r.key.Seal(obj, plain, configAD)
	if err := storage.PutBytes(ctx, be, "config", obj); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	r.idx = index.New()
	return r, nil
}

func newRepository(be storage.Backend, mk crypto.MasterKeys, cfg Config, now func() time.Time) (*Repository, error) {
	key, err := crypto.NewKey(mk)
	if err != nil {
		return nil, err
	}
	level, err := compress.ParseLevel(cfg.Compression)
	if err != nil {
		return nil, err
	}
	codec, err := compress.New(level, runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	return &Repository{be: be, mk: mk, key: key, cfg: cfg, codec: codec, idx: index.New(), now: now}, nil
}

// AddKey stores a new key file sealing the master keys under password and returns its ID.
func (r *Repository) AddKey(ctx context.Context, password []byte, kdf crypto.KDFParams) (id.ID, error) {
	host, _ := os.Hostname()
	username := ""
	if u, err := user.Current(); err == nil {
		username = u.Username
	}
	buf, err := crypto.NewKeyFile(r.mk, password, kdf, r.now(), host, username)
	if err != nil {
		return id.Null, fmt.Errorf("create key: %w", err)
	}
	kid := id.Hash(buf)
	if err := storage.PutBytes(ctx, r.be, keysPrefix+kid.String(), buf); err != nil {
		return id.Null, fmt.Errorf("write key %s: %w", kid.Short(), err)
	}
	return kid, nil
}

// OpenOptions tunes an opened repository; zero values mean defaults.
type OpenOptions struct {
	// Now is the clock for snapshot times and lock heartbeats; nil means time.Now.
	Now func() time.Time
}

// Open finds the key the password opens, then reads the config. It does not load the index: callers that
// read or write blobs call LoadIndex.
func Open(ctx context.Context, be storage.Backend, password []byte, opts OpenOptions) (*Repository, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	obj, err := storage.ReadAll(ctx, be, "config")
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", be.Location(), ErrNoRepository)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(obj) < len(configMagic)+1 || !bytes.HasPrefix(obj, []byte(configMagic)) {
		return nil, fmt.Errorf("%s: the config object is not a Straddle repository's: %w", be.Location(), ErrCorrupt)
	}
	if v := obj[len(configMagic)]; v != FormatVersion {
		return nil, fmt.Errorf("%s: repository format version %d is not supported by this version of straddle (it reads %d)", be.Location(), v, FormatVersion)
	}
	mk, kid, err := findKey(ctx, be, password)
	if err != nil {
		return nil, err
	}
	key, err := crypto.NewKey(mk)
	if err != nil {
		return nil, err
	}
	plain, err := key.Open(nil, obj[len(configMagic)+1:], configAD)
	if err != nil {
		return nil, fmt.Errorf("open config: %w: %w", err, ErrCorrupt)
	}
	cfg, err := parseConfig(plain)
	if err != nil {
		return nil, err
	}
	r, err := newRepository(be, mk, cfg, opts.Now)
	if err != nil {
		return nil, err
	}
	r.keyID = kid
	return r, nil
}

// parseConfig decodes and validates a config's plaintext.
func parseConfig(plain []byte) (Config, error) {
	var cfg Config
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return cfg, fmt.Errorf("decode config: %v: %w", err, ErrCorrupt)
	}
	if cfg.Version != FormatVersion || cfg.PackSize < 1<<20 || cfg.PackSize > 256<<20 || !cfg.Polynomial.Irreducible() {
		return cfg, fmt.Errorf("config has invalid parameters: %w", ErrCorrupt)
	}
	if _, err := compress.ParseLevel(cfg.Compression); err != nil {
		return cfg, fmt.Errorf("config: %v: %w", err, ErrCorrupt)
	}
	return cfg, nil
}

// findKey tries the password on every key file and returns the master keys and the ID of the first key file
// it opens.
func findKey(ctx context.Context, be storage.Backend, password []byte) (crypto.MasterKeys, id.ID, error) {
	var names []string
	if err := be.List(ctx, keysPrefix, func(fi storage.Info) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return crypto.MasterKeys{}, id.Null, fmt.Errorf("list keys: %w", err)
	}
	if len(names) == 0 {
		return crypto.MasterKeys{}, id.Null, fmt.Errorf("the repository has no keys: %w", ErrCorrupt)
	}
	var damaged []string
	for _, name := range names {
		base := strings.TrimPrefix(name, keysPrefix)
		// Writers name key files by their hash; any other name is not a key file this code wrote.
		kid, err := id.Parse(base)
		if err != nil {
			damaged = append(damaged, shortName(base))
			continue
		}
		buf, err := storage.ReadAll(ctx, be, name)
		if err != nil {
			return crypto.MasterKeys{}, id.Null, fmt.Errorf("read key: %w", err)
		}
		kf, err := crypto.ParseKeyFile(buf)
		if err != nil {
			damaged = append(damaged, kid.Short())
			continue
		}
		mk, err := kf.Open(password)
		if err == nil {
			return mk, kid, nil
		}
		if !errors.Is(err, crypto.ErrAuth) {
			damaged = append(damaged, kid.Short())
		}
	}
	if len(damaged) > 0 {
		return crypto.MasterKeys{}, id.Null, fmt.Errorf("%w (damaged key files: %s)", ErrWrongPassword, strings.Join(damaged, ", "))
	}
	return crypto.MasterKeys{}, id.Null, ErrWrongPassword
}

// Config returns the repository's configuration.
func (r *Repository) Config() Config { return r.cfg }

// Backend returns the storage the repository lives in.
func (r *Repository) Backend() storage.Backend { return r.be }

// Key returns the repository's keys, for code that seals or opens objects itself (check, tests).
func (r *Repository) Key() *crypto.Key { return r.key }

// Index returns the in-memory index (empty until LoadIndex).
func (r *Repository) Index() *index.Index { return r.idx }

// Now returns the repository's clock reading.
func (r *Repository) Now() time.Time { return r.now() }

// Close releases what the repository holds locally (a paged index's files). Storage needs no closing.
func (r *Repository) Close() error { return r.idx.Close() }
