package abi

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeWaitRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		ok bool
	}{
		{`{"kind":"sleep","duration":1000}`, true},
		{`{"kind":"sleep","until":5}`, true},
		{`{"kind":"signal","name":"approval:refund","timeout":0}`, true},
		{`{"kind":"signal","name":"go"}`, true},
		{`{"kind":"sleep"}`, false},
		{`{"kind":"sleep","duration":1,"until":2}`, false},
		{`{"kind":"sleep","duration":-1}`, false},
		{`{"kind":"sleep","duration":1,"name":"x"}`, false},
		{`{"kind":"signal"}`, false},
		{`{"kind":"signal","name":"a b"}`, false},
		{`{"kind":"signal","name":"x","timeout":-5}`, false},
		{`{"kind":"signal","name":"x","until":5}`, false},
		{`{"kind":"approval"}`, false},
		{`{"kind":"sleep","duration":1,"extra":true}`, false},
		{`{"kind":"sleep","duration":1,"duration":2}`, false},
		{`{"kind":"sleep","duration":1.5}`, false},
		{`[]`, false},
		{`{"kind":"signal","name":"` + strings.Repeat("n", MaxSignalNameBytes+1) + `"}`, false},
		{`{"kind":"sleep","duration":1}` + strings.Repeat(" ", MaxWaitRequestBytes), false},
	}
	for _, tc := range tests {
		_, _, err := DecodeWaitRequest([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%.60s: err %v, want ok %v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, StatusInvalidArgument) {
			t.Errorf("%.60s: error %v without invalid_argument", tc.in, err)
		}
	}
	// The identity does not depend on spelling.
	_, a, _ := DecodeWaitRequest([]byte(`{"timeout": 5, "name": "go", "kind": "signal"}`))
	_, b, _ := DecodeWaitRequest([]byte(`{"kind":"signal","name":"go","timeout":5}`))
	if string(a) != string(b) {
		t.Errorf("canonical forms differ: %s and %s", a, b)
	}
}

// FuzzDecodeWaitRequest: any bytes decode or are refused with
// invalid_argument; what is accepted is canonical and decodes again to the
// same request.
func FuzzDecodeWaitRequest(f *testing.F) {
	for _, s := range []string{`{"kind":"sleep","duration":1000}`, `{"kind":"signal","name":"go","timeout":5}`, `{"kind":"sleep","until":1e3}`, `{}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		req, canon, err := DecodeWaitRequest(in)
		if err != nil {
			if !errors.Is(err, StatusInvalidArgument) {
				t.Fatalf("error without invalid_argument: %v", err)
			}
			return
		}
		again, canon2, err := DecodeWaitRequest(canon)
		if err != nil || again != req || string(canon2) != string(canon) {
			t.Fatalf("canonical %s decodes to %+v (%v), was %+v", canon, again, err, req)
		}
	})
}
