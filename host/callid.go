package host

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
)

// CallID is a tool call's deterministic identity and idempotency key:
//
//	sha256(task_id, tool, canonical_json(params), occurrence | "key:"+key)
//
// with each field length-prefixed (u32 big endian) so no two field lists
// share an encoding. occurrence counts earlier identical (tool, params) calls
// in the same attempt; a guest-supplied key replaces it.
func CallID(taskID, tool string, params []byte, key string, occurrence int) string {
	h := sha256.New()
	var n [4]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(taskID))
	field([]byte(tool))
	field(params)
	if key != "" {
		field([]byte("key:" + key))
	} else {
		field([]byte("#" + strconv.Itoa(occurrence)))
	}
	return hex.EncodeToString(h.Sum(nil))
}
