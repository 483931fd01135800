package plugins

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/orloj/orloj/abi"
)

// Secrets resolves named secrets on the node making a call. Values are read
// when a call needs them and are never replicated, recorded or logged.
type Secrets interface {
	// Secret returns the value of the named secret. A missing secret fails
	// with ErrSecretNotFound; every error carries abi.StatusTransient (another
	// node, or this one later, may have it) and names the secret, never a
	// value.
	Secret(name string) (string, error)
}

// ErrSecretNotFound is returned for a secret a node does not have.
var ErrSecretNotFound = errors.New("secret not found")

// MaxSecretBytes bounds a secret's value.
const MaxSecretBytes = 64 << 10

// SecretEnvPrefix starts the environment variable of a secret:
// ORLOJ_SECRET_<NAME>, NAME upper-cased with '-' as '_'.
const SecretEnvPrefix = "ORLOJ_SECRET_"

// ValidSecretName accepts 1 to 128 letters, digits, '-' and '_', starting
// with a letter or digit: a name that is both a file name and, upper-cased,
// part of an environment variable's name.
func ValidSecretName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("secret name %q: want 1 to 128 characters", name)
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_') {
			return fmt.Errorf("secret name %q: only letters, digits, '-' and '_', starting with a letter or digit", name)
		}
	}
	return nil
}

// SecretEnvName is the environment variable that holds secret name.
func SecretEnvName(name string) string {
	return SecretEnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// NodeSecrets reads secrets from the environment (SecretEnvName), then from
// files Dir/<name>, which must be regular files of mode 0600 (no group or
// other bits): a secret others can read is refused rather than used. A single trailing newline is
// trimmed from a file's content.
type NodeSecrets struct {
	Dir string
	// LookupEnv reads the environment; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// Secret implements Secrets.
func (s NodeSecrets) Secret(name string) (string, error) {
	if err := ValidSecretName(name); err != nil {
		return "", abi.Errorf(abi.StatusTransient, "%v", err)
	}
	env := SecretEnvName(name)
	lookup := s.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if v, ok := lookup(env); ok && v != "" {
		return v, nil
	}
	if s.Dir == "" {
		return "", &callError{status: abi.Errorf(abi.StatusTransient, "secret %q is not set on this node (environment variable %s)", name, env), cause: ErrSecretNotFound}
	}
	path := filepath.Join(s.Dir, name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &callError{status: abi.Errorf(abi.StatusTransient, "secret %q is not set on this node (environment variable %s or file %s)", name, env, path), cause: ErrSecretNotFound}
	}
	if err != nil {
		return "", abi.Errorf(abi.StatusTransient, "secret %q: open %s: %v", name, path, errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", abi.Errorf(abi.StatusTransient, "secret %q: stat %s: %v", name, path, err)
	}
	if !st.Mode().IsRegular() {
		return "", abi.Errorf(abi.StatusTransient, "secret %q: %s is not a regular file", name, path)
	}
	// Owner-only: 0600 (or 0400). A secret others could read is refused
	// rather than used, so the mistake is seen.
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return "", abi.Errorf(abi.StatusTransient, "secret %q: %s has mode %04o; it must be 0600, readable by the node's user only (chmod 600 %s)", name, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretBytes+1))
	if err != nil {
		return "", abi.Errorf(abi.StatusTransient, "secret %q: read %s: %v", name, path, err)
	}
	if len(b) > MaxSecretBytes {
		return "", abi.Errorf(abi.StatusTransient, "secret %q: %s is over %d bytes", name, path, MaxSecretBytes)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return "", &callError{status: abi.Errorf(abi.StatusTransient, "secret %q: %s is empty", name, path), cause: ErrSecretNotFound}
	}
	return v, nil
}

// MapSecrets is a fixed set of secrets, for tests and embedding.
type MapSecrets map[string]string

// Secret implements Secrets.
func (m MapSecrets) Secret(name string) (string, error) {
	if v, ok := m[name]; ok {
		return v, nil
	}
	return "", &callError{status: abi.Errorf(abi.StatusTransient, "secret %q is not set", name), cause: ErrSecretNotFound}
}
