package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/storage"
)

// keysPrefix holds the key files, each named by the SHA-256 of its content.
const keysPrefix = "keys/"

// KeyInfo describes one key file, as `straddle repo key list` shows it.
type KeyInfo struct {
	ID       id.ID
	Created  time.Time
	Host     string
	Username string
	// Current marks the key the repository was opened with.
	Current bool
	// Damaged says why the key file does not parse. Such a file opens nothing, but it can be removed.
	Damaged string
}

// KeyID returns the ID of the key file the repository was opened with.
func (r *Repository) KeyID() id.ID {
	r.keyMu.Lock()
	defer r.keyMu.Unlock()
	return r.keyID
}

// ListKeys reads every key file, oldest first. A file that does not parse is listed as damaged, not an
// error, so that it can be seen and removed.
func (r *Repository) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	ids, err := r.listIDs(ctx, keysPrefix)
	if err != nil {
		return nil, err
	}
	current := r.KeyID()
	keys := make([]KeyInfo, 0, len(ids))
	for _, kid := range ids {
		buf, err := storage.ReadAll(ctx, r.be, keysPrefix+kid.String())
		if errors.Is(err, storage.ErrNotFound) {
			// Removed since the listing: it is no longer a key.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", kid.Short(), err)
		}
		info := KeyInfo{ID: kid, Current: kid == current}
		if kf, err := crypto.ParseKeyFile(buf); err != nil {
			info.Damaged = err.Error()
		} else {
			info.Created, info.Host, info.Username = kf.Created, kf.Host, kf.Username
		}
		keys = append(keys, info)
	}
	slices.SortFunc(keys, func(a, b KeyInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return id.Compare(a.ID, b.ID)
	})
	return keys, nil
}

// FindKey resolves a full key ID or a unique prefix of at least four hex digits to a stored key's ID.
func (r *Repository) FindKey(ctx context.Context, ref string) (id.ID, error) {
	if len(ref) < 4 || strings.Trim(ref, "0123456789abcdef") != "" {
		return id.Null, fmt.Errorf("%q is not a key ID (at least 4 lowercase hex digits)", ref)
	}
	ids, err := r.listIDs(ctx, keysPrefix)
	if err != nil {
		return id.Null, err
	}
	var match []id.ID
	for _, kid := range ids {
		if strings.HasPrefix(kid.String(), ref) {
			match = append(match, kid)
		}
	}
	switch len(match) {
	case 0:
		return id.Null, fmt.Errorf("no key with ID %s: %w", ref, ErrNotFound)
	case 1:
		return match[0], nil
	}
	return id.Null, fmt.Errorf("key ID prefix %s matches %d keys: %w", ref, len(match), ErrAmbiguous)
}

// RemoveKey deletes a key file. It refuses when no other key file that parses would remain (ErrLastKey),
// and refuses the key the repository was opened with (ErrKeyInUse): the caller proved only that password,
// so removing its key could lock the caller out. Other keys' passwords cannot be tested here, so "another
// key remains" means another key file exists and parses.
func (r *Repository) RemoveKey(ctx context.Context, kid id.ID) error {
	keys, err := r.ListKeys(ctx)
	if err != nil {
		return err
	}
	found, others := false, 0
	for _, k := range keys {
		switch {
		case k.ID == kid:
			found = true
		case k.Damaged == "":
			others++
		}
	}
	if !found {
		return fmt.Errorf("remove key %s: %w", kid.Short(), ErrNotFound)
	}
	if others == 0 {
		return fmt.Errorf("refusing to remove key %s: no other key would open the repository: %w", kid.Short(), ErrLastKey)
	}
	if kid == r.KeyID() {
		return fmt.Errorf("refusing to remove key %s: it is the key this password opened (change it with key passwd, or open with another key's password): %w", kid.Short(), ErrKeyInUse)
	}
	if err := r.be.Delete(ctx, keysPrefix+kid.String()); err != nil {
		return fmt.Errorf("remove key %s: %w", kid.Short(), err)
	}
	return nil
}

// ChangePassword stores a key for newPassword, makes it the key in use, then removes the key the repository
// was opened with. If the removal fails, the new key is kept and both passwords open the repository.
func (r *Repository) ChangePassword(ctx context.Context, newPassword []byte, kdf crypto.KDFParams) (id.ID, error) {
	old := r.KeyID()
	newID, err := r.AddKey(ctx, newPassword, kdf)
	if err != nil {
		return id.Null, err
	}
	r.keyMu.Lock()
	r.keyID = newID
	r.keyMu.Unlock()
	if err := r.RemoveKey(ctx, old); err != nil {
		return newID, fmt.Errorf("the new key %s is stored, but the old key is not removed: %w", newID.Short(), err)
	}
	return newID, nil
}

// shortName cuts an object name to the eight characters messages show, without assuming it is that long.
func shortName(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
