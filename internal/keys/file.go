package keys

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// LoadOrCreateEd25519 loads the Ed25519 private key stored as PKCS#8 PEM at
// path, or, if there is no file, generates one and stores it with mode 0600.
// created reports which happened.
//
// Creation is atomic: the key is written and synced under a temporary name
// and then hard-linked into place, so a crash never leaves a truncated key
// and two processes racing to create it end up agreeing on one key (the
// loser of the link loads the winner's).
func LoadOrCreateEd25519(path string) (key ed25519.PrivateKey, created bool, err error) {
	key, err = loadEd25519(path)
	if err == nil {
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}

	signer, err := Generate(Ed25519)
	if err != nil {
		return nil, false, fmt.Errorf("generate key: %w", err)
	}
	pemBytes, err := MarshalPrivateKeyPEM(signer)
	if err != nil {
		return nil, false, err
	}
	if err := WriteNewFile(path, pemBytes, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			key, err = loadEd25519(path)
			return key, false, err
		}
		return nil, false, err
	}
	return signer.(ed25519.PrivateKey), true, nil
}

func loadEd25519(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k, ok := s.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: %w: want an Ed25519 key, found %T", path, ErrUnsupportedKey, s)
	}
	return k, nil
}

// WriteNewFile writes data to a new file at path with mode perm, failing
// with an error matching fs.ErrExist if path already exists. The file appears
// at path complete and synced, or not at all, which is what key and
// certificate files need: a torn write would lock the owner out.
func WriteNewFile(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		// Whether linked or not, the temporary name must go.
		if rmErr := os.Remove(tmp.Name()); rmErr != nil && err == nil && !errors.Is(rmErr, fs.ErrNotExist) {
			err = rmErr
		}
	}()
	// CreateTemp always uses 0600, right for keys but not for a certificate
	// meant to be world-readable.
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// Link, unlike Rename, refuses to replace an existing file.
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
