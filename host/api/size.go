package api

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits are the suffixes ParseSize takes, longest first so that "MiB"
// is not read as "B". kB, MB and GB are decimal (SI), KiB, MiB and GiB
// binary (IEC); the bare K, M and G are binary, as in most memory flags.
var sizeUnits = []struct {
	suffix string
	mult   uint64
}{
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// ParseSize reads a byte count: a whole number, optionally followed by a
// unit: kB, MB, GB (powers of 1000), KiB, MiB, GiB or K, M, G (powers of
// 1024), or B. Units are case-insensitive and may follow a space. It is the
// one size syntax of the API (memory_limit) and of every CLI flag and
// config value that takes a size; callers check the range they allow.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	upper := strings.ToUpper(t)
	mult := uint64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(upper, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a whole number of bytes, optionally with kB, MB, GB (1000s) or KiB, MiB, GiB (1024s)", s)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}
