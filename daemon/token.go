package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/orloj/orloj/cluster"
)

// TokenFile is the name, under the data dir, of the file holding the admin
// token. The CLI reads it when it runs on the same machine.
const TokenFile = "token"

// loadToken returns the admin token: the given one, else the token file's,
// else a new random one written to the token file (mode 0600). A given token
// is written to the file too, so the CLI on this machine finds the one the
// API accepts.
func loadToken(dataDir, given string) (string, error) {
	path := filepath.Join(dataDir, TokenFile)
	if given != "" {
		if err := cluster.WriteFileAtomic(path, []byte(given+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("write token file: %w", err)
		}
		return given, nil
	}
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("token file %s is empty; delete it to generate a new token", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read token file: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	if err := cluster.WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write token file: %w", err)
	}
	return tok, nil
}
