// Package repo is Straddle's repository engine: an encrypted, deduplicated store of snapshots in any
// storage.Backend. It knows nothing of Kubernetes.
package repo

import (
	"errors"

	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/storage"
)

// Sentinel errors callers test with errors.Is.
var (
	// ErrNoRepository means there is no repository at the location.
	ErrNoRepository = errors.New("no repository here")
	// ErrWrongPassword means no key file opens with the password.
	ErrWrongPassword = errors.New("wrong password: no key in the repository opens with it")
	// ErrExists means init found a repository already there.
	ErrExists = errors.New("a repository already exists here")
	// ErrAmbiguous means an ID prefix matches more than one snapshot or key.
	ErrAmbiguous = errors.New("ambiguous ID prefix")
	// ErrKeyInUse means a command tried to remove the key the repository was opened with.
	ErrKeyInUse = errors.New("the key is in use")
	// ErrLastKey means removing a key would leave no key that opens the repository.
	ErrLastKey = errors.New("the repository's last usable key")
	// ErrNotFound means a blob, snapshot or object is missing.
	ErrNotFound = storage.ErrNotFound
	// ErrCorrupt means stored data failed authentication or did not decode.
	ErrCorrupt = pack.ErrCorrupt
)
