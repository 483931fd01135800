package sandbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"io"
)

// newRandSource returns the guest's random source: the AES-256-CTR keystream
// under key sha256(taskID) with a zero IV. Every attempt of a task reads the
// same bytes, so a replayed agent makes the same "random" choices (DESIGN
// invariant 7). AES-CTR is a standard, fixed algorithm (unlike a library PRNG
// whose stream may change between Go releases) and runs at GB/s.
//
// It is not secret from anyone who knows the task ID; a guest that needs real
// secrets must get them through a tool.
func newRandSource(taskID string) io.Reader {
	key := sha256.Sum256([]byte(taskID))
	block, _ := aes.NewCipher(key[:]) // cannot fail: the key is 32 bytes
	var iv [aes.BlockSize]byte
	return &keystream{s: cipher.NewCTR(block, iv[:])}
}

type keystream struct{ s cipher.Stream }

func (k *keystream) Read(p []byte) (int, error) {
	clear(p)
	k.s.XORKeyStream(p, p)
	return len(p), nil
}
