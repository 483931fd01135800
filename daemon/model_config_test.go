package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/orloj/orloj/plugins"
)

// TestConfigValidateModelEndpoints: the model endpoints are checked at
// Validate, naming the field and the entry, never showing a key.
func TestConfigValidateModelEndpoints(t *testing.T) {
	t.Parallel()
	const key = "sk-ant-fake-SECRET-77"
	claude := plugins.ModelEndpoint{Name: "claude", Provider: plugins.ProviderAnthropic, APIKey: key, Model: "claude-sonnet-4-5"}
	tests := []struct {
		name   string
		change func(*Config)
		field  string
		msg    string
	}{
		{"named endpoint alone", func(c *Config) { c.ModelEndpoints = []plugins.ModelEndpoint{claude} }, "", ""},
		{"default and named", func(c *Config) {
			c.ModelURL, c.Model, c.ModelProvider = "http://127.0.0.1:1", "m", plugins.ProviderAnthropic
			c.ModelEndpoints = []plugins.ModelEndpoint{claude}
		}, "", ""},
		{"duplicate names", func(c *Config) { c.ModelEndpoints = []plugins.ModelEndpoint{claude, claude} }, "ModelEndpoints", "twice"},
		{"a second default", func(c *Config) {
			c.ModelURL, c.Model = "http://127.0.0.1:1/v1", "m"
			c.ModelEndpoints = []plugins.ModelEndpoint{{Name: "default", Model: "m"}}
		}, "ModelEndpoints", "twice"},
		{"unknown provider", func(c *Config) {
			c.ModelEndpoints = []plugins.ModelEndpoint{{Name: "g", Provider: "gemini", Model: "m", APIKey: key}}
		}, "ModelEndpoints", `[0] "g": Provider`},
		{"bad URL", func(c *Config) {
			c.ModelEndpoints = []plugins.ModelEndpoint{claude, {Name: "x", BaseURL: "127.0.0.1:8080", Model: "m", APIKey: key}}
		}, "ModelEndpoints", `[1] "x": BaseURL`},
		{"missing model", func(c *Config) { c.ModelEndpoints = []plugins.ModelEndpoint{{Name: "x", APIKey: key}} }, "ModelEndpoints", "Model: required"},
		{"bad name", func(c *Config) { c.ModelEndpoints = []plugins.ModelEndpoint{{Name: "", Model: "m"}} }, "ModelEndpoints", "Name"},
		{"unknown default provider", func(c *Config) { c.ModelURL, c.Model, c.ModelProvider = "http://127.0.0.1:1/v1", "m", "azure" }, "ModelProvider", "azure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := cfg.modelConfig(); !ok {
					t.Fatal("no model tool for a config with endpoints")
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want a ConfigError naming %s and saying %q", err, tt.field, tt.msg)
			}
			if strings.Contains(err.Error(), key) {
				t.Fatalf("err %q shows the API key", err)
			}
		})
	}
}
