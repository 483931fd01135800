package orloj

import (
	"encoding/json"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/internal/jsonwarm"
)

// Prepare readies encoding/json for the types of the given values: it
// encodes a sample of each (every slice and map given one element, every
// pointer a target) and decodes the result back into the type, so the
// package's per-type caches hold the type's encoder and fields.
//
// Why: encoding/json learns a type by reflection the first time it sees it,
// and in WebAssembly that is slow: for an agent of six small calls it was
// half of an attempt's guest time. In a reactor build, whatever the package
// initializers do is done once per agent version and copied into every
// attempt, so an agent that calls Prepare from an initializer pays for the
// learning once:
//
//	var _ = orloj.Prepare(input{}, httpRequest{}, httpResponse{})
//
// In a command build it costs what the first use of each type costs anyway.
// Prepare has no effect on what an agent does and calls no host function;
// it returns true so it can initialize a blank package-level variable.
func Prepare(values ...any) bool {
	jsonwarm.Prepare(values...)
	return true
}

// The SDK's own types and the shapes every agent passes through it.
var _ = Prepare(abi.ErrorBody{}, map[string]any{}, []any{}, json.RawMessage(nil))
