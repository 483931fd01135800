// Package lincheck checks the lease histories that the chaos harness records
// for linearizability against Orloj's per-task lease specification.
//
// It owns the history file format (JSONL call/ret records, one file per
// process), the sequential model of one task's lease (claim, renew, write,
// complete, fail, expire under fencing tokens), and the Report that chaos
// tests assert on. It does not run processes or inject faults; the harness
// does that and hands the files to ReadFiles and Check.
package lincheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Record phases. PhaseTruncated is never written by the harness: ReadFiles
// synthesizes it for a tolerated garbled last line so that Check can count it.
const (
	PhaseCall      = "call"
	PhaseRet       = "ret"
	PhaseTruncated = "truncated"
)

// Operations.
const (
	OpClaim    = "claim"
	OpRenew    = "renew"
	OpComplete = "complete"
	OpFail     = "fail"
	OpExpire   = "expire"
	OpWrite    = "write"
)

// Results.
const (
	ResOK       = "ok"       // applied
	ResNone     = "none"     // applied, did nothing (claim: nothing runnable; expire: lease moved on)
	ResRejected = "rejected" // not applied: fenced off
	ResUnknown  = "unknown"  // may or may not have been applied
)

// Record is one line of a history file: the call or the return of one
// operation proposed by one process.
type Record struct {
	P     string `json:"p"`
	ID    string `json:"id"`
	Node  string `json:"node,omitempty"`
	Op    string `json:"op,omitempty"`
	Task  string `json:"task"`
	Token uint64 `json:"token"`
	T     int64  `json:"t"` // unix nanoseconds, wall clock (one machine, so comparable across files)
	Res   string `json:"res,omitempty"`

	// Where the record was read from, for error messages; not part of the format.
	File string `json:"-"`
	Line int    `json:"-"`
}

func (r Record) where() string {
	if r.File == "" {
		return "record " + r.ID
	}
	return fmt.Sprintf("%s:%d", r.File, r.Line)
}

func validOp(op string) bool {
	switch op {
	case OpClaim, OpRenew, OpComplete, OpFail, OpExpire, OpWrite:
		return true
	}
	return false
}

func validRes(res string) bool {
	switch res {
	case ResOK, ResNone, ResRejected, ResUnknown:
		return true
	}
	return false
}

// validate checks one record in isolation; joining calls with returns is
// Check's job.
func (r Record) validate() error {
	if r.ID == "" {
		return errors.New("missing id")
	}
	switch r.P {
	case PhaseCall:
		if !validOp(r.Op) {
			return fmt.Errorf("call %s: unknown op %q", r.ID, r.Op)
		}
		if r.Op != OpClaim && r.Task == "" {
			return fmt.Errorf("call %s: %s without a task", r.ID, r.Op)
		}
	case PhaseRet:
		if !validRes(r.Res) {
			return fmt.Errorf("ret %s: unknown res %q", r.ID, r.Res)
		}
	default:
		return fmt.Errorf("unknown phase %q", r.P)
	}
	return nil
}

// ReadFiles reads history files. A process that is SIGKILLed mid-write
// leaves at most its last line torn, so a last line that does not parse is
// returned as a PhaseTruncated record (Check counts those); a bad line
// anywhere else means the file is not a history and is an error. Blank lines
// are skipped.
func ReadFiles(paths ...string) ([]Record, error) {
	var recs []Record
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("lincheck: read history: %w", err)
		}
		lines := bytes.Split(data, []byte("\n"))
		last := len(lines) - 1
		for last >= 0 && len(bytes.TrimSpace(lines[last])) == 0 {
			last--
		}
		for i := 0; i <= last; i++ {
			line := bytes.TrimSpace(lines[i])
			if len(line) == 0 {
				continue
			}
			var r Record
			err := json.Unmarshal(line, &r)
			if err == nil {
				err = r.validate()
			}
			if err != nil {
				if i == last {
					recs = append(recs, Record{P: PhaseTruncated, File: path, Line: i + 1})
					continue
				}
				return nil, fmt.Errorf("lincheck: %s:%d: %w", path, i+1, err)
			}
			r.File, r.Line = path, i+1
			recs = append(recs, r)
		}
	}
	return recs, nil
}
