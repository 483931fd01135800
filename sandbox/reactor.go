package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero/api"

	"github.com/orloj/orloj/abi"
)

// ModuleKind says how an attempt enters a module.
type ModuleKind uint8

const (
	// ModuleCommand is a WASI command: every attempt instantiates it and
	// runs _start, language runtime start-up included.
	ModuleCommand ModuleKind = iota
	// ModuleReactor exports orloj_run (and usually _initialize) instead of
	// _start. Its initialization runs once per agent version and argv/env;
	// every attempt starts from a copy of the initialized state and calls
	// orloj_run (see snapshot.go).
	ModuleReactor
)

func (k ModuleKind) String() string {
	switch k {
	case ModuleCommand:
		return "command"
	case ModuleReactor:
		return "reactor"
	}
	return fmt.Sprintf("module_kind(%d)", uint8(k))
}

// kindOf tells a command from a reactor by its exports. _start wins, so a
// Go command built with an SDK that also exports orloj_run stays a command,
// exactly as before reactors existed.
func kindOf(exportNames []string) ModuleKind {
	if !slices.Contains(exportNames, abi.ExportStart) && slices.Contains(exportNames, abi.ExportRun) {
		return ModuleReactor
	}
	return ModuleCommand
}

// globalExportPrefix names the exports the sandbox adds to a reactor for its
// mutable globals, so a snapshot can read and restore them (wazero lets a
// host set only exported globals). A module that already exports a name
// with this prefix is not rewritten (and so not pre-initialized).
const globalExportPrefix = "orloj.preinit.global."

// reactorPlan is how a rewritten reactor is initialized and restored.
type reactorPlan struct {
	// segments are the module's active data segments. The compiled module
	// has none, so that an attempt restored from a snapshot starts from
	// zeroed memory instead of copying the data segments only to overwrite
	// them; an instance that initializes applies them by hand.
	segments []segment
	// globals are the export names of the module's mutable globals, in
	// index order.
	globals []string
}

// prepareReactor rewrites a reactor for snapshots: its mutable globals are
// exported (globalExportPrefix + index) and its data section removed (kept
// in the plan). ok is false, and the module must run as uploaded with its
// initialization in every attempt, when the rewrite could change behaviour
// or is not understood: a start section (it would run at every
// instantiation, before a restore), a data count section or data segments
// that are not all active i32.const offsets into memory 0 (memory.init and
// data.drop name segments by index), an export name with the reserved
// prefix, or imported globals.
func prepareReactor(wasm []byte, scan *moduleScan) (out []byte, plan *reactorPlan, ok bool) {
	if scan.start || scan.dataCount || scan.exports[1] == 0 {
		return nil, nil, false
	}
	for _, name := range scan.exportNames {
		if strings.HasPrefix(name, globalExportPrefix) {
			return nil, nil, false
		}
	}
	for _, im := range scan.imports {
		if im.kind == kindGlobal {
			return nil, nil, false
		}
	}
	plan = &reactorPlan{}
	dataStart, dataEnd := scan.data[0], scan.data[1]
	if dataStart != dataEnd {
		if dataStart < scan.exports[1] {
			return nil, nil, false // out of order; wazero will refuse it
		}
		segs, ok := activeSegments(wasm[dataStart:dataEnd])
		if !ok {
			return nil, nil, false
		}
		plan.segments = segs
	}

	// The export section, re-encoded with the globals appended.
	r := &reader{b: wasm[scan.exports[0]:scan.exports[1]]}
	r.byte()
	r.u32()
	n := r.u32()
	if r.err != nil {
		return nil, nil, false
	}
	entries := r.b
	var added []byte
	count := uint64(n)
	for i, g := range scan.globals {
		if !g.mutable {
			continue
		}
		name := globalExportPrefix + strconv.Itoa(i)
		plan.globals = append(plan.globals, name)
		added = appendULEB(added, uint64(len(name)))
		added = append(added, name...)
		added = append(added, byte(kindGlobal))
		added = appendULEB(added, uint64(i))
		count++
	}
	body := appendULEB(nil, count)
	body = append(body, entries...)
	body = append(body, added...)

	var b bytes.Buffer
	b.Grow(len(wasm) + len(added) + 8)
	b.Write(wasm[:scan.exports[0]])
	b.WriteByte(7)
	b.Write(appendULEB(nil, uint64(len(body))))
	b.Write(body)
	if dataStart != dataEnd {
		b.Write(wasm[scan.exports[1]:dataStart])
		b.Write(wasm[dataEnd:])
	} else {
		b.Write(wasm[scan.exports[1]:])
	}
	return b.Bytes(), plan, true
}

// applyData writes the plan's data segments into a fresh instance's memory,
// as instantiation would have.
func (p *reactorPlan) applyData(mod api.Module) error {
	if p == nil || len(p.segments) == 0 {
		return nil
	}
	mem := mod.Memory()
	buf, _ := mem.Read(0, mem.Size())
	for i, s := range p.segments {
		if s.end() > uint64(len(buf)) {
			return fmt.Errorf("sandbox: data segment %d ([%d, %d)) lies outside the initial memory of %d bytes", i, s.off, s.end(), len(buf))
		}
		copy(buf[s.off:], s.data)
	}
	return nil
}

// initialize brings a fresh reactor instance to the state a snapshot
// records: its data segments (when the plan moved them out of the module),
// then _initialize if it exports one.
func initialize(ctx context.Context, mod api.Module, plan *reactorPlan) error {
	if err := plan.applyData(mod); err != nil {
		return err
	}
	if fn := mod.ExportedFunction(abi.ExportInitialize); fn != nil {
		if _, err := fn.Call(ctx); err != nil {
			return fmt.Errorf("%s: %w", abi.ExportInitialize, err)
		}
	}
	return nil
}
