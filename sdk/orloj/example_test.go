//go:build !wasip1

package orloj_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/orloj"
)

// greet is an agent's logic: what its main hands to orloj.Main.
func greet() error {
	var in struct {
		Name string `json:"name"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	var res struct {
		Text string `json:"text"`
	}
	if err := orloj.CallInto("translate", map[string]string{"text": "hello, " + in.Name, "to": "fr"}, &res); err != nil {
		return err
	}
	orloj.Logf("translated for %s", in.Name)
	return orloj.Output(map[string]string{"greeting": res.Text})
}

// A test scripts the tools with a Fake, runs the agent's logic natively and
// checks what it did.
func Example() {
	f := orloj.NewFake().
		SetInput(map[string]string{"name": "Ada"}).
		Handle("translate", func(params json.RawMessage) (any, error) {
			var p struct{ Text, To string }
			if err := json.Unmarshal(params, &p); err != nil {
				return nil, abi.Errorf(abi.StatusToolError, "bad params: %v", err)
			}
			return map[string]string{"text": "bonjour, Ada"}, nil
		})
	defer f.Install()()

	if err := greet(); err != nil {
		fmt.Println("error:", err)
	}
	for _, c := range f.Calls() {
		fmt.Println("call:", c.Tool, string(c.Params)) // params in canonical form
	}
	fmt.Println("log:", f.Logs()[0])
	fmt.Println("output:", string(f.Output()))
	// Output:
	// call: translate {"text":"hello, Ada","to":"fr"}
	// log: info: translated for Ada
	// output: {"greeting":"bonjour, Ada"}
}

// A handler's error reaches the agent with its status, so a test can check
// that a failing dependency leads to a retry (exit 75) rather than the DLQ.
func ExampleExitCode() {
	f := orloj.NewFake().
		SetInput(map[string]string{"name": "Ada"}).
		Handle("translate", func(json.RawMessage) (any, error) {
			return nil, abi.Errorf(abi.StatusTransient, "upstream answered 503")
		})
	defer f.Install()()

	err := greet()
	fmt.Println(err)
	fmt.Println("transient:", errors.Is(err, orloj.ErrTransient))
	fmt.Println("exit code:", orloj.ExitCode(err))
	// Output:
	// orloj: call translate: transient: upstream answered 503
	// transient: true
	// exit code: 75
}

// confirmOrder waits up to two days for the customer's confirmation, then
// a day more before it ships.
func confirmOrder() error {
	p, err := orloj.Await("confirmed", 48*time.Hour)
	switch {
	case errors.Is(err, orloj.ErrTimeout):
		return orloj.Output(map[string]string{"result": "expired"})
	case err != nil:
		return err
	}
	if err := orloj.Sleep(24 * time.Hour); err != nil {
		return err
	}
	return orloj.Output(map[string]json.RawMessage{"shipping": p})
}

// A test sends the signal before the agent awaits it (the host keeps it
// the same way) and reads the Fake's clock, which the sleep moved on.
func ExampleAwait() {
	start := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	f := orloj.NewFake().SetNow(start).Signal("confirmed", map[string]string{"address": "Main St 1"})
	defer f.Install()()

	if err := confirmOrder(); err != nil {
		fmt.Println("error:", err)
	}
	fmt.Println("output:", string(f.Output()))
	fmt.Println("slept:", f.Clock().Sub(start))
	// Output:
	// output: {"shipping":{"address":"Main St 1"}}
	// slept: 24h0m0s
}
