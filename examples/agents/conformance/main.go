// Command conformance is the Go SDK's conformance agent: it reads a case
// name from its input, {"case": "...", "url": "..."}, performs that case
// with the SDK's public API only, and writes what it saw as its output. The
// conformance suite (cmd/orlojd/conformance_e2e_test.go, docs/sdks.md)
// runs every case through `orlojd run` and on a node and checks the
// results; the C, Rust and AssemblyScript agents do exactly the same.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"

	"github.com/orloj/orloj/sdk/orloj"
)

func main() { orloj.Main(run) }

type input struct {
	Case string `json:"case"`
	URL  string `json:"url"`
}

func get(url string) map[string]any { return map[string]any{"url": url} }

func run() error {
	raw, err := orloj.Input()
	if err != nil {
		return err
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		return fmt.Errorf("conformance: input: %w", err)
	}
	switch in.Case {
	case "echo":
		return orloj.Output(json.RawMessage(raw))
	case "large_response":
		res, err := orloj.Call("http", get(in.URL+"/big"))
		if err != nil {
			return err
		}
		h := fnv.New32a()
		h.Write(res)
		return orloj.Output(map[string]any{"len": len(res), "fnv1a": h.Sum32()})
	case "statuses":
		type answer struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		}
		var got []answer
		for _, c := range []struct {
			tool   string
			params any
		}{
			{"http", get(in.URL + "/tool_error")},
			{"http", get(in.URL + "/transient")},
			{"undeclared", nil},
			{"bad tool!", nil},
		} {
			_, err := orloj.Call(c.tool, c.params)
			var e *orloj.Error
			if !errors.As(err, &e) {
				return fmt.Errorf("conformance: call %s answered %v, want a host error", c.tool, err)
			}
			got = append(got, answer{e.Status.String(), e.Message})
		}
		return orloj.Output(map[string]any{"answers": got})
	case "replay":
		t1, err := orloj.Now()
		if err != nil {
			return err
		}
		t2, err := orloj.Now()
		if err != nil {
			return err
		}
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		r := hex.EncodeToString(b)
		orloj.Logf("replay %d %d %s", t1.UnixNano(), t2.UnixNano(), r)
		if _, err := orloj.Call("http", get(in.URL+"/flaky")); err != nil {
			return err // transient: exit 75, and the retry replays
		}
		t3, err := orloj.Now()
		if err != nil {
			return err
		}
		return orloj.Output(map[string]any{"now": []int64{t1.UnixNano(), t2.UnixNano(), t3.UnixNano()}, "random": r})
	case "exit_transient":
		os.Exit(75)
	case "exit_permanent":
		os.Exit(3)
	case "exit_after_transient":
		_, err := orloj.Call("http", get(in.URL+"/transient"))
		fmt.Fprintf(os.Stderr, "conformance: %v\n", err)
		os.Exit(1)
	case "exit_after_denied":
		_, err := orloj.Call("undeclared", nil)
		fmt.Fprintf(os.Stderr, "conformance: %v\n", err)
		os.Exit(1)
	case "emit":
		p := map[string]any{"method": "POST", "url": in.URL + "/effect", "body": "conformance"}
		for _, opts := range [][]orloj.CallOption{nil, {orloj.WithKey("k1")}, nil} {
			if err := orloj.Emit("http", p, opts...); err != nil {
				return err
			}
		}
		return orloj.Output(map[string]any{"emitted": 3})
	case "occurrence":
		p := get(in.URL + "/occ")
		for _, opts := range [][]orloj.CallOption{nil, {orloj.WithKey("k")}, nil} {
			if _, err := orloj.Call("http", p, opts...); err != nil {
				return err
			}
		}
		return orloj.Output(map[string]any{"calls": 3})
	}
	fmt.Fprintf(os.Stderr, "conformance: unknown case %q\n", in.Case)
	os.Exit(2)
	return nil
}
