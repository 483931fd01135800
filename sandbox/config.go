package sandbox

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults applied to zero fields of Config and RunConfig.
const (
	DefaultMaxModuleBytes = 64 << 20
	DefaultMemoryLimit    = 256 << 20
	DefaultTimeout        = 30 * time.Second
	DefaultOutputCap      = 1 << 20

	// MaxMemoryLimit is the most a wasm32 guest can address: 65536 pages.
	MaxMemoryLimit = 1 << 32

	pageSize = 1 << 16
)

// Config configures a Runtime. The zero value is usable: in-memory
// compilation only, modules up to DefaultMaxModuleBytes.
type Config struct {
	// CacheDir holds wazero's on-disk compilation cache, so a restarted node
	// compiles a known module in milliseconds instead of hundreds of them.
	// "" keeps compiled code in memory only.
	CacheDir string
	// MaxModuleBytes refuses larger modules at Compile. 0 means
	// DefaultMaxModuleBytes.
	MaxModuleBytes int64
}

// Validate reports the first invalid field, by name.
func (c Config) Validate() error {
	if c.MaxModuleBytes < 0 {
		return fmt.Errorf("sandbox: Config.MaxModuleBytes is %d; must be >= 0 (0 means %d)", c.MaxModuleBytes, DefaultMaxModuleBytes)
	}
	if c.CacheDir != "" && strings.ContainsRune(c.CacheDir, 0) {
		return errors.New("sandbox: Config.CacheDir contains a NUL byte")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxModuleBytes == 0 {
		c.MaxModuleBytes = DefaultMaxModuleBytes
	}
	return c
}

// RunConfig describes one attempt.
type RunConfig struct {
	// TaskID seeds the guest's random source: WASI random_get (and so
	// crypto/rand in a Go guest) reads a deterministic stream derived from
	// sha256(TaskID), so every attempt of a task sees the same bytes.
	TaskID string
	// Name is argv[0]. "" means the module's name (Module.Name).
	Name string
	// Args are argv beyond argv[0]; the guest sees nothing else.
	Args []string
	// Env is the guest's whole environment.
	Env map[string]string
	// MemoryLimit caps the guest's linear memory, in bytes, rounded up to
	// 64 KiB pages. 0 means DefaultMemoryLimit; at most MaxMemoryLimit.
	MemoryLimit uint64
	// Timeout bounds the attempt's wall time, interrupting even a loop that
	// makes no calls. 0 means DefaultTimeout.
	Timeout time.Duration
	// OutputCap bounds the capture of stdout and of stderr, each. Beyond it
	// the middle is dropped and the gap marked. 0 means DefaultOutputCap.
	OutputCap int
	// Dispatcher serves the attempt's orloj_v1 calls. Required.
	Dispatcher Dispatcher
}

// Validate reports the first invalid field, by name.
func (rc RunConfig) Validate() error {
	switch {
	case rc.Dispatcher == nil:
		return errors.New("sandbox: RunConfig.Dispatcher is nil")
	case rc.MemoryLimit > MaxMemoryLimit:
		return fmt.Errorf("sandbox: RunConfig.MemoryLimit is %d bytes; a wasm32 guest addresses at most %d", rc.MemoryLimit, uint64(MaxMemoryLimit))
	case rc.Timeout < 0:
		return fmt.Errorf("sandbox: RunConfig.Timeout is %v; must be >= 0 (0 means %v)", rc.Timeout, DefaultTimeout)
	case rc.OutputCap < 0:
		return fmt.Errorf("sandbox: RunConfig.OutputCap is %d; must be >= 0 (0 means %d)", rc.OutputCap, DefaultOutputCap)
	case strings.ContainsRune(rc.Name, 0):
		return errors.New("sandbox: RunConfig.Name contains a NUL byte")
	}
	for i, a := range rc.Args {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("sandbox: RunConfig.Args[%d] contains a NUL byte", i)
		}
	}
	for k, v := range rc.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return fmt.Errorf("sandbox: RunConfig.Env key %q: keys must be non-empty without '=' or NUL, values without NUL", k)
		}
	}
	return nil
}

func (rc RunConfig) withDefaults() RunConfig {
	if rc.MemoryLimit == 0 {
		rc.MemoryLimit = DefaultMemoryLimit
	}
	rc.MemoryLimit = (rc.MemoryLimit + pageSize - 1) &^ (pageSize - 1)
	if rc.Timeout == 0 {
		rc.Timeout = DefaultTimeout
	}
	if rc.OutputCap == 0 {
		rc.OutputCap = DefaultOutputCap
	}
	return rc
}
