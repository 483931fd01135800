package plugins

import "encoding/json"

// modelSchema documents the model tool's params for agent authors and
// models; parseModelParams is what enforces them.
var modelSchema = json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "model",
  "description": "Ask a chat model for a completion, with function calling. OpenAI chat-completions params, whichever provider the endpoint speaks.",
  "type": "object",
  "$defs": {
    "text": {"type": "object", "properties": {"type": {"const": "text"}, "text": {"type": "string"}}, "required": ["type", "text"], "additionalProperties": false},
    "image": {"type": "object", "properties": {"type": {"const": "image_url"}, "image_url": {"type": "object", "properties": {"url": {"type": "string"}, "detail": {"type": "string"}}, "required": ["url"], "additionalProperties": false}}, "required": ["type", "image_url"], "additionalProperties": false},
    "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
    "toolCall": {
      "type": "object",
      "properties": {
        "id": {"type": "string", "minLength": 1},
        "type": {"const": "function"},
        "function": {"type": "object", "properties": {"name": {"$ref": "#/$defs/name"}, "arguments": {"type": "string", "description": "the arguments, a JSON object encoded as a string"}}, "required": ["name", "arguments"], "additionalProperties": false}
      },
      "required": ["id", "function"],
      "additionalProperties": false
    }
  },
  "properties": {
    "endpoint": {"$ref": "#/$defs/name", "description": "a configured endpoint's name; absent means \"default\""},
    "model": {"type": "string", "minLength": 1, "description": "overrides the endpoint's default model"},
    "messages": {
      "type": "array",
      "minItems": 1,
      "maxItems": 1000,
      "items": {
        "type": "object",
        "properties": {
          "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
          "content": {"anyOf": [{"type": "string"}, {"type": "null"}, {"type": "array", "minItems": 1, "maxItems": 256, "items": {"anyOf": [{"$ref": "#/$defs/text"}, {"$ref": "#/$defs/image"}]}}]},
          "name": {"type": "string"},
          "tool_calls": {"type": "array", "maxItems": 128, "items": {"$ref": "#/$defs/toolCall"}},
          "tool_call_id": {"type": "string", "minLength": 1}
        },
        "required": ["role"],
        "additionalProperties": false
      }
    },
    "tools": {
      "type": "array",
      "maxItems": 128,
      "items": {
        "type": "object",
        "properties": {
          "type": {"const": "function"},
          "function": {"type": "object", "properties": {"name": {"$ref": "#/$defs/name"}, "description": {"type": "string"}, "parameters": {"type": "object"}, "strict": {"type": "boolean"}}, "required": ["name"], "additionalProperties": false}
        },
        "required": ["type", "function"],
        "additionalProperties": false
      }
    },
    "tool_choice": {"anyOf": [{"enum": ["auto", "none", "required"]}, {"type": "object", "properties": {"type": {"const": "function"}, "function": {"type": "object", "properties": {"name": {"$ref": "#/$defs/name"}}, "required": ["name"], "additionalProperties": false}}, "required": ["type", "function"], "additionalProperties": false}]},
    "parallel_tool_calls": {"type": "boolean"},
    "response_format": {
      "type": "object",
      "properties": {
        "type": {"enum": ["text", "json_object", "json_schema"]},
        "json_schema": {"type": "object", "properties": {"name": {"$ref": "#/$defs/name"}, "description": {"type": "string"}, "schema": {"type": "object"}, "strict": {"type": "boolean"}}, "required": ["name"], "additionalProperties": false}
      },
      "required": ["type"],
      "additionalProperties": false
    },
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "max_tokens": {"type": "integer", "minimum": 1},
    "max_completion_tokens": {"type": "integer", "minimum": 1},
    "stop": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1}}]},
    "seed": {"type": "integer"}
  },
  "required": ["messages"],
  "additionalProperties": false
}`)
