/*
 * orloj.h: the Orloj guest ABI, version 1 (orloj_v1), for C.
 *
 * Header only, no dependencies. The imports and the status codes need
 * nothing at all; the helpers that allocate (orloj_input_alloc,
 * orloj_call_alloc, ...) use malloc and are left out when ORLOJ_NO_MALLOC is
 * defined before the include.
 *
 * Build an agent (a WASI command exporting _start) with clang and wasi-libc:
 *
 *     clang --target=wasm32-wasi -O2 -I sdk/c agent.c -o agent.wasm
 *
 * docs/abi.md is the contract these declarations follow; docs/sdk-c.md
 * explains the helpers.
 */
#ifndef ORLOJ_H
#define ORLOJ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Statuses every host function returns. Values never change. */
typedef enum orloj_status {
	ORLOJ_OK = 0,
	ORLOJ_NOT_FOUND = 1,
	ORLOJ_PERMISSION_DENIED = 2,
	ORLOJ_TOOL_ERROR = 3,
	ORLOJ_TRANSIENT = 4,
	ORLOJ_IN_DOUBT = 5,
	ORLOJ_BUDGET_EXCEEDED = 6,
	ORLOJ_BUFFER_TOO_SMALL = 7,
	ORLOJ_INVALID_ARGUMENT = 8,
	ORLOJ_FAULT = 9,
	ORLOJ_TIMEOUT = 10,
} orloj_status;

/* Log levels for orloj_log. */
enum {
	ORLOJ_DEBUG = 0,
	ORLOJ_INFO = 1,
	ORLOJ_WARN = 2,
	ORLOJ_ERROR = 3,
};

/* Exit codes: proc_exit(ORLOJ_EXIT_TRANSIENT), e.g. exit(75), asks for a
 * retry under the task's backoff policy. */
#define ORLOJ_EXIT_TRANSIENT 75

/* The host functions. Every pointer and length is a byte offset into the
 * module's exported memory; see docs/abi.md section 4 for each one. */
#define ORLOJ_IMPORT(name) __attribute__((import_module("orloj_v1"), import_name(name)))

ORLOJ_IMPORT("input")
int32_t orloj_input(uint8_t *buf, uint32_t cap, uint32_t *len);
ORLOJ_IMPORT("call")
int32_t orloj_call(const uint8_t *req, uint32_t req_len, uint8_t *buf, uint32_t cap, uint32_t *len);
ORLOJ_IMPORT("call_batch")
int32_t orloj_call_batch(const uint8_t *req, uint32_t req_len, uint8_t *buf, uint32_t cap, uint32_t *len);
ORLOJ_IMPORT("response")
int32_t orloj_response(uint8_t *buf, uint32_t cap, uint32_t *len);
ORLOJ_IMPORT("output")
int32_t orloj_output(const uint8_t *json, uint32_t len);
ORLOJ_IMPORT("log")
int32_t orloj_log(int32_t level, const uint8_t *msg, uint32_t len);
ORLOJ_IMPORT("now")
int32_t orloj_now(uint64_t *unix_nanos);
ORLOJ_IMPORT("emit")
int32_t orloj_emit(const uint8_t *req, uint32_t req_len);
ORLOJ_IMPORT("wait")
int32_t orloj_wait(const uint8_t *req, uint32_t req_len, uint8_t *buf, uint32_t cap, uint32_t *len);

#undef ORLOJ_IMPORT

/* orloj_status_name is the status's name in error bodies ("tool_error"). */
static inline const char *orloj_status_name(int32_t st)
{
	static const char *const names[] = {
		"ok", "not_found", "permission_denied", "tool_error", "transient", "in_doubt",
		"budget_exceeded", "buffer_too_small", "invalid_argument", "fault", "timeout",
	};
	if (st < 0 || st >= (int32_t)(sizeof names / sizeof names[0]))
		return "unknown";
	return names[st];
}

static inline size_t orloj__strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

/* orloj_log_str logs a NUL-terminated line. */
static inline int32_t orloj_log_str(int32_t level, const char *msg)
{
	return orloj_log(level, (const uint8_t *)msg, (uint32_t)orloj__strlen(msg));
}

/* orloj_output_str sets the output from a NUL-terminated JSON text. */
static inline int32_t orloj_output_str(const char *json)
{
	return orloj_output((const uint8_t *)json, (uint32_t)orloj__strlen(json));
}

/* orloj_emit_str stages an effect from a NUL-terminated request
 * ({"tool": ..., "params": ...}). */
static inline int32_t orloj_emit_str(const char *req)
{
	return orloj_emit((const uint8_t *)req, (uint32_t)orloj__strlen(req));
}

#ifndef ORLOJ_NO_MALLOC
#include <stdlib.h>

/* The first buffer the allocating helpers offer. Most bodies fit; a larger
 * one costs one more host call (response), never a second tool call. */
#ifndef ORLOJ_FIRST_BUFFER
#define ORLOJ_FIRST_BUFFER 4096
#endif

/*
 * A body the host answered with: the tool's result on ORLOJ_OK, otherwise the
 * error body {"status": "...", "message": "..."}. data is NUL-terminated (the
 * terminator is not counted in len) and is the caller's to free().
 */
typedef struct orloj_body {
	char *data;
	uint32_t len;
} orloj_body;

/*
 * orloj__finish does the buffer_too_small dance. After a function that
 * answered st into buf (cap bytes, length at *len), it returns the final
 * status and the whole body: when the body did not fit, the host kept it, and
 * response copies it into a buffer of the announced size and returns the
 * status of the original call. Any status can arrive as buffer_too_small
 * first, so the caller must not branch on st before this.
 */
static inline int32_t orloj__finish(int32_t st, char *buf, uint32_t len, orloj_body *out)
{
	out->data = NULL;
	out->len = 0;
	if (st == ORLOJ_FAULT) {
		free(buf);
		return st;
	}
	while (st == ORLOJ_BUFFER_TOO_SMALL) {
		uint32_t want = len;
		char *bigger = (char *)realloc(buf, (size_t)want + 1);
		if (bigger == NULL) {
			free(buf);
			return ORLOJ_BUFFER_TOO_SMALL;
		}
		buf = bigger;
		st = orloj_response((uint8_t *)buf, want, &len);
		if (st == ORLOJ_BUFFER_TOO_SMALL && len <= want) {
			break; /* cannot happen with a correct host; do not loop */
		}
	}
	buf[len] = '\0';
	out->data = buf;
	out->len = len;
	return st;
}

/* orloj_input_alloc reads the whole task input. */
static inline int32_t orloj_input_alloc(orloj_body *out)
{
	uint32_t len = 0;
	char *buf = (char *)malloc(ORLOJ_FIRST_BUFFER + 1);
	if (buf == NULL) {
		out->data = NULL;
		out->len = 0;
		return ORLOJ_BUFFER_TOO_SMALL;
	}
	int32_t st = orloj_input((uint8_t *)buf, ORLOJ_FIRST_BUFFER, &len);
	return orloj__finish(st, buf, len, out);
}

typedef int32_t (*orloj__reqfn)(const uint8_t *, uint32_t, uint8_t *, uint32_t, uint32_t *);

static inline int32_t orloj__request(orloj__reqfn fn, const char *req, size_t req_len, orloj_body *out)
{
	uint32_t len = 0;
	char *buf = (char *)malloc(ORLOJ_FIRST_BUFFER + 1);
	if (buf == NULL) {
		out->data = NULL;
		out->len = 0;
		return ORLOJ_BUFFER_TOO_SMALL;
	}
	int32_t st = fn((const uint8_t *)req, (uint32_t)req_len, (uint8_t *)buf, ORLOJ_FIRST_BUFFER, &len);
	return orloj__finish(st, buf, len, out);
}

/* orloj_call_alloc invokes a tool with a whole request
 * ({"tool": ..., "params": ..., "key": ...}) and returns its status and body. */
static inline int32_t orloj_call_alloc(const char *req, size_t req_len, orloj_body *out)
{
	return orloj__request(orloj_call, req, req_len, out);
}

/* orloj_call_batch_alloc is orloj_call_alloc for call_batch. */
static inline int32_t orloj_call_batch_alloc(const char *req, size_t req_len, orloj_body *out)
{
	return orloj__request(orloj_call_batch, req, req_len, out);
}

/* orloj_wait_alloc is orloj_call_alloc for wait. */
static inline int32_t orloj_wait_alloc(const char *req, size_t req_len, orloj_body *out)
{
	return orloj__request(orloj_wait, req, req_len, out);
}

/* orloj_body_free frees a body and clears it. */
static inline void orloj_body_free(orloj_body *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
}
#endif /* ORLOJ_NO_MALLOC */

#ifdef __cplusplus
}
#endif

#endif /* ORLOJ_H */
