package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
)

func ExampleRegistry() {
	kv := plugins.NewMemKV()
	reg, err := plugins.NewRegistry(
		plugins.NewKV(kv),
		plugins.NewStub("ocr", plugins.Idempotent, func(ctx context.Context, c plugins.Call) (plugins.Result, error) {
			return plugins.Result{Body: json.RawMessage(`{"text":"INVOICE 42"}`)}, nil
		}),
	)
	if err != nil {
		panic(err)
	}
	fmt.Println(reg.Names())

	tool, _ := reg.Get("ocr")
	res, _ := tool.Invoke(context.Background(), plugins.Call{ID: "c1", TaskID: "t1", Params: json.RawMessage(`{}`)})
	fmt.Println(string(res.Body))
	// Output:
	// [kv ocr]
	// {"text":"INVOICE 42"}
}

func ExampleNewKV() {
	mem := plugins.NewMemKV()
	kv := plugins.NewKV(mem)
	ctx := context.Background()
	call := func(task, params string) string {
		res, err := kv.Invoke(ctx, plugins.Call{ID: task + params, TaskID: task, Params: json.RawMessage(params)})
		if err != nil {
			return err.Error()
		}
		return string(res.Body)
	}
	fmt.Println(call("t1", `{"op":"put","key":"total","value":42}`))
	fmt.Println(call("t1", `{"op":"get","key":"total"}`))
	fmt.Println(call("t2", `{"op":"get","key":"total"}`))
	mem.Commit("t1") // the host does this when t1 succeeds
	fmt.Println(call("t2", `{"op":"get","key":"total"}`))
	fmt.Println(call("t2", `{"op":"incr","key":"total"}`))
	// Output:
	// {"staged":true}
	// {"found":true,"value":42}
	// {"found":false,"value":null}
	// {"found":true,"value":42}
	// invalid_argument: op "incr": want get, put or delete
}

func ExampleNewHTTP() {
	tool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{"api.example.com"}})
	if err != nil {
		panic(err)
	}
	// Refused before any connection is made.
	_, err = tool.Invoke(context.Background(), plugins.Call{ID: "c1", TaskID: "t1",
		Params: json.RawMessage(`{"url":"https://evil.example.net/x"}`)})
	fmt.Println(errors.Is(err, abi.StatusPermissionDenied))
	fmt.Println(err)
	// Output:
	// true
	// permission_denied: host "evil.example.net:443" is not on the allow-list of tool "http"
}
