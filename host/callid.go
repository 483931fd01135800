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
	// Hashed in one piece from a stack buffer: every call, replayed or
	// not, is identified, and sha256.New put a digest on the heap.
	var stack [512]byte
	b := appendField(stack[:0], taskID)
	b = appendField(b, tool)
	b = binary.BigEndian.AppendUint32(b, uint32(len(params)))
	b = append(b, params...)
	if key != "" {
		b = binary.BigEndian.AppendUint32(b, uint32(len("key:")+len(key)))
		b = append(append(b, "key:"...), key...)
	} else {
		var occ [20]byte
		o := strconv.AppendInt(append(occ[:0], '#'), int64(occurrence), 10)
		b = binary.BigEndian.AppendUint32(b, uint32(len(o)))
		b = append(b, o...)
	}
	sum := sha256.Sum256(b)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// appendField appends s with its length (u32 big endian) before it.
func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
