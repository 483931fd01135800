package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// crockford is Crockford's base32 alphabet (no I, L, O, U): IDs survive being
// read aloud or copied by hand, and sort in time order as strings.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewTaskID returns a 26-character, ULID-shaped ID: 48 bits of unix
// milliseconds, then 80 random bits. IDs from the same millisecond are
// unordered among themselves; across milliseconds they sort by time.
func NewTaskID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:]) // crypto/rand.Read never fails (it crashes the program instead)
	hi, lo := binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint64(b[8:16])
	var out [26]byte
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
