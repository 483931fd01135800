package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/plugins"
)

// TestServeModelEndpoints: model_endpoints in the config file become the
// daemon's typed list, each key read from the variable the entry names;
// a bad entry is refused naming the setting by all its names, without the
// key.
func TestServeModelEndpoints(t *testing.T) {
	const key = "sk-ant-config-FAKE-5521"
	t.Setenv("TEST_CLAUDE_KEY", key)
	file := filepath.Join(t.TempDir(), "orlojd.json")
	os.WriteFile(file, []byte(`{"model_url": "http://127.0.0.1:1/v1", "model": "gpt-4o", "model_provider": "openai",
		"model_endpoints": [
		  {"name": "claude", "provider": "anthropic", "key_env": "TEST_CLAUDE_KEY", "model": "claude-sonnet-4-5", "max_tokens": 2048, "prompt_cache": true},
		  {"name": "local", "base_url": "http://127.0.0.1:2/v1", "model": "llama"}]}`), 0o600)
	cmd := newServeCmd()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadServeConfig(cmd.Flags(), file)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.daemonConfig(hclog.NewNullLogger())
	want := []plugins.ModelEndpoint{
		{Name: "claude", Provider: plugins.ProviderAnthropic, APIKey: key, Model: "claude-sonnet-4-5", MaxTokens: 2048, PromptCache: true},
		{Name: "local", BaseURL: "http://127.0.0.1:2/v1", Model: "llama"},
	}
	if len(d.ModelEndpoints) != 2 || d.ModelEndpoints[0] != want[0] || d.ModelEndpoints[1] != want[1] || d.ModelProvider != plugins.ProviderOpenAI {
		t.Fatalf("daemon endpoints = %+v, provider %q", d.ModelEndpoints, d.ModelProvider)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}

	// The flag takes the same JSON, and beats the file.
	cmd = newServeCmd()
	if err := cmd.ParseFlags([]string{"--model-endpoints", `[{"name":"other","model":"m"}]`}); err != nil {
		t.Fatal(err)
	}
	if cfg, err = loadServeConfig(cmd.Flags(), file); err != nil || len(cfg.ModelEndpoints) != 1 || cfg.ModelEndpoints[0].Name != "other" {
		t.Fatalf("flag: %+v, %v", cfg.ModelEndpoints, err)
	}

	for _, bad := range []struct{ file, want string }{
		{`{"model_endpoints": [{"name": "x", "model": "m", "api_key": "` + key + `"}]}`, `unknown field "api_key"`},
		{`{"model_endpoints": {"name": "x"}}`, "model_endpoints"},
		{`{"model_endpoints": [{"name": "x", "model": "m", "name": "y"}]}`, "duplicate"},
	} {
		os.WriteFile(file, []byte(bad.file), 0o600)
		cmd := newServeCmd()
		if err := cmd.ParseFlags(nil); err != nil {
			t.Fatal(err)
		}
		_, err := loadServeConfig(cmd.Flags(), file)
		if err == nil || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), key) {
			t.Errorf("%s: err = %v, want it to say %q and not show the key", bad.file, err, bad.want)
		}
	}

	// What the daemon refuses names the setting by all its names.
	os.WriteFile(file, []byte(`{"model_endpoints": [{"name": "claude", "provider": "gemini", "key_env": "TEST_CLAUDE_KEY", "model": "m"}]}`), 0o600)
	cmd = newServeCmd()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if cfg, err = loadServeConfig(cmd.Flags(), file); err != nil {
		t.Fatal(err)
	}
	err = cfg.explainConfigError(cfg.daemonConfig(hclog.NewNullLogger()).Validate())
	for _, s := range []string{"--model-endpoints", "ORLOJ_MODEL_ENDPOINTS", "model_endpoints", `"claude"`, "Provider"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("err = %v, want it to name %s", err, s)
		}
	}
	if err != nil && strings.Contains(err.Error(), key) {
		t.Errorf("err %q shows the key", err)
	}
}
