/*
 * conformance in C: the conformance agent of sdk/c/orloj.h. It reads a case
 * name from its input, {"case": "...", "url": "..."}, performs that case
 * with the header's API only, and writes what it saw as its output. The
 * conformance suite (docs/sdks.md, Conformance) runs every case through
 * `orlojd run` and on a node and checks the results; the Go, Rust and
 * AssemblyScript agents do exactly the same.
 *
 * Build: clang --target=wasm32-wasi -O2 -I sdk/c -o conformance.wasm main.c
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orloj.h"
/* The docpipeline example's small JSON reader; not every helper is used. */
#pragma clang diagnostic ignored "-Wunused-function"
#include "../docpipeline/json.h"

static void die(const char *what, int32_t st)
{
	fprintf(stderr, "conformance: %s: %s\n", what, orloj_status_name(st));
	exit(st == ORLOJ_TRANSIENT ? ORLOJ_EXIT_TRANSIENT : 1);
}

/* request is {"tool": tool, "params": params[, "key": key]}. */
static buf request(const char *tool, const char *params, const char *key)
{
	buf r = {0};
	buf_str(&r, "{\"tool\":");
	buf_qstr(&r, tool);
	buf_str(&r, ",\"params\":");
	buf_str(&r, params);
	if (key) {
		buf_str(&r, ",\"key\":");
		buf_qstr(&r, key);
	}
	buf_str(&r, "}");
	return r;
}

/* call invokes tool and returns the status; *res gets the body. */
static int32_t call(const char *tool, const char *params, const char *key, orloj_body *res)
{
	buf r = request(tool, params, key);
	int32_t st = orloj_call_alloc(r.data, r.len, res);
	free(r.data);
	return st;
}

/* get_params is {"url": url + path}. */
static buf get_params(const char *url, const char *path)
{
	buf p = {0};
	buf u = {0};
	buf_str(&u, url);
	buf_str(&u, path);
	buf_str(&p, "{\"url\":");
	buf_quote(&p, u.data, u.len);
	buf_str(&p, "}");
	free(u.data);
	return p;
}

static void output(buf *b)
{
	int32_t st = orloj_output((const uint8_t *)b->data, (uint32_t)b->len);
	if (st != ORLOJ_OK)
		die("output", st);
}

int main(void)
{
	orloj_body in;
	int32_t st = orloj_input_alloc(&in);
	if (st != ORLOJ_OK)
		die("input", st);
	const char *end = in.data + in.len;
	const char *v = json_member(in.data, end, "case");
	char *name = v ? json_string(v, end, NULL) : NULL;
	v = json_member(in.data, end, "url");
	char *url = v ? json_string(v, end, NULL) : NULL;
	if (name == NULL || url == NULL) {
		fprintf(stderr, "conformance: the input needs string members case and url\n");
		return 2;
	}
	buf out = {0};
	orloj_body res;

	if (strcmp(name, "echo") == 0) {
		st = orloj_output((const uint8_t *)in.data, in.len);
		if (st != ORLOJ_OK)
			die("output", st);
		return 0;
	}
	if (strcmp(name, "large_response") == 0) {
		buf p = get_params(url, "/big");
		st = call("http", p.data, NULL, &res);
		if (st != ORLOJ_OK)
			die("call http", st);
		uint32_t h = 2166136261u; /* FNV-1a, 32 bits */
		for (uint32_t i = 0; i < res.len; i++)
			h = (h ^ (uint8_t)res.data[i]) * 16777619u;
		char line[64];
		snprintf(line, sizeof line, "{\"len\":%" PRIu32 ",\"fnv1a\":%" PRIu32 "}", res.len, h);
		buf_str(&out, line);
		output(&out);
		return 0;
	}
	if (strcmp(name, "statuses") == 0) {
		buf te = get_params(url, "/tool_error"), tr = get_params(url, "/transient");
		struct {
			const char *tool, *params;
		} calls[] = {{"http", te.data}, {"http", tr.data}, {"undeclared", "null"}, {"bad tool!", "null"}};
		buf_str(&out, "{\"answers\":[");
		for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
			st = call(calls[i].tool, calls[i].params, NULL, &res);
			const char *m = res.data ? json_member(res.data, res.data + res.len, "message") : NULL;
			size_t mlen = 0;
			char *msg = m ? json_string(m, res.data + res.len, &mlen) : NULL;
			if (i > 0)
				buf_str(&out, ",");
			buf_str(&out, "{\"status\":");
			buf_qstr(&out, orloj_status_name(st));
			buf_str(&out, ",\"message\":");
			buf_quote(&out, msg ? msg : "", msg ? mlen : 0);
			buf_str(&out, "}");
			free(msg);
			orloj_body_free(&res);
		}
		buf_str(&out, "]}");
		output(&out);
		return 0;
	}
	if (strcmp(name, "replay") == 0) {
		uint64_t t1, t2, t3;
		if ((st = orloj_now(&t1)) != ORLOJ_OK || (st = orloj_now(&t2)) != ORLOJ_OK)
			die("now", st);
		unsigned char r[16];
		if (getentropy(r, sizeof r) != 0) {
			perror("getentropy");
			return 1;
		}
		char hex[33];
		for (int i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", r[i]);
		char line[128];
		snprintf(line, sizeof line, "replay %" PRIu64 " %" PRIu64 " %s", t1, t2, hex);
		orloj_log_str(ORLOJ_INFO, line);
		buf p = get_params(url, "/flaky");
		st = call("http", p.data, NULL, &res);
		if (st != ORLOJ_OK)
			die("call http", st); /* transient: exit 75, and the retry replays */
		if ((st = orloj_now(&t3)) != ORLOJ_OK)
			die("now", st);
		snprintf(line, sizeof line, "{\"now\":[%" PRIu64 ",%" PRIu64 ",%" PRIu64 "],\"random\":\"%s\"}", t1, t2, t3, hex);
		buf_str(&out, line);
		output(&out);
		return 0;
	}
	if (strcmp(name, "exit_transient") == 0)
		exit(75);
	if (strcmp(name, "exit_permanent") == 0)
		exit(3);
	if (strcmp(name, "exit_after_transient") == 0) {
		buf p = get_params(url, "/transient");
		st = call("http", p.data, NULL, &res);
		fprintf(stderr, "conformance: http answered %s\n", orloj_status_name(st));
		exit(1);
	}
	if (strcmp(name, "exit_after_denied") == 0) {
		st = call("undeclared", "null", NULL, &res);
		fprintf(stderr, "conformance: undeclared answered %s\n", orloj_status_name(st));
		exit(1);
	}
	if (strcmp(name, "emit") == 0) {
		buf u = {0};
		buf_str(&u, url);
		buf_str(&u, "/effect");
		buf p = {0};
		buf_str(&p, "{\"method\":\"POST\",\"url\":");
		buf_quote(&p, u.data, u.len);
		buf_str(&p, ",\"body\":\"conformance\"}");
		const char *keys[] = {NULL, "k1", NULL};
		for (int i = 0; i < 3; i++) {
			buf r = request("http", p.data, keys[i]);
			st = orloj_emit((const uint8_t *)r.data, (uint32_t)r.len);
			free(r.data);
			if (st != ORLOJ_OK)
				die("emit http", st);
		}
		buf_str(&out, "{\"emitted\":3}");
		output(&out);
		return 0;
	}
	if (strcmp(name, "occurrence") == 0) {
		buf p = get_params(url, "/occ");
		const char *keys[] = {NULL, "k", NULL};
		for (int i = 0; i < 3; i++) {
			st = call("http", p.data, keys[i], &res);
			if (st != ORLOJ_OK)
				die("call http", st);
			orloj_body_free(&res);
		}
		buf_str(&out, "{\"calls\":3}");
		output(&out);
		return 0;
	}
	fprintf(stderr, "conformance: unknown case %s\n", name);
	return 2;
}
