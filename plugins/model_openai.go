package plugins

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/orloj/orloj/abi"
)

// This file speaks OpenAI's chat completions: the request is the guest's
// params as they came, minus "endpoint", with the model filled in.

func openAIRequest(p modelParams, ep *modelEndpoint) (wireRequest, error) {
	p.Endpoint = ""
	body, err := encodeRequest(p)
	if err != nil {
		return wireRequest{}, err
	}
	h := http.Header{}
	if ep.apiKey != "" {
		h.Set("Authorization", "Bearer "+ep.apiKey)
	}
	return wireRequest{body: body, header: h}, nil
}

// encodeRequest encodes a provider request without HTML escaping, which
// only makes bodies larger.
func encodeRequest(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, statusErrorf(abi.StatusInvalidArgument, err, "encode request")
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

type openAIResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   *string    `json:"content"`
			Refusal   *string    `json:"refusal"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        int64 `json:"prompt_tokens"`
		CompletionTokens    int64 `json:"completion_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int64 `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
}

func parseOpenAIResponse(body []byte) (modelResult, error) {
	var r openAIResponse
	if err := decodeResponse(body, &r, "a chat completion"); err != nil {
		return modelResult{}, err
	}
	if len(r.Choices) == 0 {
		return modelResult{}, abi.Errorf(abi.StatusToolError, "response has no choices")
	}
	c := r.Choices[0]
	res := modelResult{Model: r.Model, FinishReason: c.FinishReason, ToolCalls: c.Message.ToolCalls}
	switch {
	case c.Message.Content != nil:
		res.Content = *c.Message.Content
	case c.Message.Refusal != nil:
		// A refusal comes instead of content; the guest reads it there.
		res.Content = *c.Message.Refusal
	}
	for i := range res.ToolCalls {
		if res.ToolCalls[i].Type == "" {
			res.ToolCalls[i].Type = "function"
		}
	}
	if u := r.Usage; u != nil {
		res.Usage = &Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens}
		if u.PromptTokensDetails != nil {
			res.Usage.CachedTokens = u.PromptTokensDetails.CachedTokens
		}
	}
	return res, nil
}
