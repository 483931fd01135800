/*
 * json.h: the little JSON the docpipeline agent needs, and no more: check
 * and skip a value, find an object's member, decode a string, and append
 * quoted strings to a growing buffer. Not a general JSON library: numbers
 * are kept as their text.
 */
#ifndef DOCPIPELINE_JSON_H
#define DOCPIPELINE_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Nesting deeper than this is refused rather than recursed into. */
#define JSON_MAX_DEPTH 64

static const char *json_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *json_skip_depth(const char *p, const char *end, int depth);

static int json_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* json_skip_string: p at the opening quote; returns just past the closing
 * one, or NULL. */
static const char *json_skip_string(const char *p, const char *end)
{
	if (p >= end || *p != '"')
		return NULL;
	for (p++; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			return p + 1;
		if (c < 0x20)
			return NULL;
		if (c == '\\') {
			if (++p >= end)
				return NULL;
			if (*p == 'u') {
				if (end - p < 5)
					return NULL;
				for (int i = 1; i <= 4; i++)
					if (json_hex(p[i]) < 0)
						return NULL;
				p += 4;
			} else if (!strchr("\"\\/bfnrt", *p)) {
				return NULL;
			}
		}
	}
	return NULL;
}

static const char *json_skip_number(const char *p, const char *end)
{
	const char *start = p;
	if (p < end && *p == '-')
		p++;
	if (p >= end || *p < '0' || *p > '9')
		return NULL;
	if (*p == '0')
		p++;
	else
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	if (p < end && *p == '.') {
		p++;
		if (p >= end || *p < '0' || *p > '9')
			return NULL;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || *p < '0' || *p > '9')
			return NULL;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	return p > start ? p : NULL;
}

static const char *json_skip_depth(const char *p, const char *end, int depth)
{
	if (depth > JSON_MAX_DEPTH)
		return NULL;
	p = json_ws(p, end);
	if (p >= end)
		return NULL;
	switch (*p) {
	case '"':
		return json_skip_string(p, end);
	case '{':
	case '[': {
		char close = *p == '{' ? '}' : ']';
		int object = *p == '{';
		p = json_ws(p + 1, end);
		if (p < end && *p == close)
			return p + 1;
		for (;;) {
			if (object) {
				p = json_skip_string(json_ws(p, end), end);
				if (p == NULL)
					return NULL;
				p = json_ws(p, end);
				if (p >= end || *p != ':')
					return NULL;
				p++;
			}
			p = json_skip_depth(p, end, depth + 1);
			if (p == NULL)
				return NULL;
			p = json_ws(p, end);
			if (p < end && *p == ',') {
				p++;
				continue;
			}
			if (p < end && *p == close)
				return p + 1;
			return NULL;
		}
	}
	case 't':
		return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
	case 'f':
		return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
	case 'n':
		return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
	default:
		return json_skip_number(p, end);
	}
}

/* json_valid reports whether [p, end) is exactly one JSON value. */
static int json_valid(const char *p, const char *end)
{
	const char *q = json_skip_depth(p, end, 0);
	return q != NULL && json_ws(q, end) == end;
}

/* json_member finds member name of the object at p and returns its value
 * (the first one, past whitespace), or NULL when p is not an object or has
 * no such member. The member names compared are the raw texts: the names
 * this agent looks for need no escapes. */
static const char *json_member(const char *p, const char *end, const char *name)
{
	size_t n = strlen(name);
	p = json_ws(p, end);
	if (p >= end || *p != '{')
		return NULL;
	p = json_ws(p + 1, end);
	if (p < end && *p == '}')
		return NULL;
	for (;;) {
		const char *key = json_ws(p, end);
		const char *after = json_skip_string(key, end);
		if (after == NULL)
			return NULL;
		p = json_ws(after, end);
		if (p >= end || *p != ':')
			return NULL;
		const char *value = json_ws(p + 1, end);
		if ((size_t)(after - key) == n + 2 && memcmp(key + 1, name, n) == 0)
			return value;
		p = json_skip_depth(value, end, 1);
		if (p == NULL)
			return NULL;
		p = json_ws(p, end);
		if (p >= end || *p != ',')
			return NULL;
		p++;
	}
}

static char *json_put_utf8(char *o, uint32_t c)
{
	if (c < 0x80) {
		*o++ = (char)c;
	} else if (c < 0x800) {
		*o++ = (char)(0xC0 | c >> 6);
		*o++ = (char)(0x80 | (c & 0x3F));
	} else if (c < 0x10000) {
		*o++ = (char)(0xE0 | c >> 12);
		*o++ = (char)(0x80 | (c >> 6 & 0x3F));
		*o++ = (char)(0x80 | (c & 0x3F));
	} else {
		*o++ = (char)(0xF0 | c >> 18);
		*o++ = (char)(0x80 | (c >> 12 & 0x3F));
		*o++ = (char)(0x80 | (c >> 6 & 0x3F));
		*o++ = (char)(0x80 | (c & 0x3F));
	}
	return o;
}

static uint32_t json_u4(const char *p)
{
	return (uint32_t)(json_hex(p[0]) << 12 | json_hex(p[1]) << 8 | json_hex(p[2]) << 4 | json_hex(p[3]));
}

/* json_string decodes the string at p into a new NUL-terminated buffer (its
 * length at *len if len is not NULL), or returns NULL when p is not a string.
 * A lone surrogate becomes U+FFFD. */
static char *json_string(const char *p, const char *end, size_t *len)
{
	const char *q = json_skip_string(p, end);
	if (q == NULL)
		return NULL;
	/* Decoding never grows the text: \uXXXX (6 bytes) is at most 4 bytes of
	 * UTF-8, a surrogate pair (12) is 4. */
	char *out = (char *)malloc((size_t)(q - p) + 1), *o = out;
	if (out == NULL)
		return NULL;
	for (p++; p < q - 1; p++) {
		if (*p != '\\') {
			*o++ = *p;
			continue;
		}
		p++;
		switch (*p) {
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			uint32_t c = json_u4(p + 1);
			p += 4;
			if (c >= 0xD800 && c < 0xDC00 && q - 1 - p >= 7 && p[1] == '\\' && p[2] == 'u') {
				uint32_t lo = json_u4(p + 3);
				if (lo >= 0xDC00 && lo < 0xE000) {
					c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
					p += 6;
				}
			}
			if (c >= 0xD800 && c < 0xE000)
				c = 0xFFFD;
			o = json_put_utf8(o, c);
			break;
		}
		default: *o++ = *p; break; /* " \ / */
		}
	}
	*o = '\0';
	if (len != NULL)
		*len = (size_t)(o - out);
	return out;
}

/* A growing, NUL-terminated text. Allocation failure aborts: an agent that
 * cannot allocate a few kilobytes cannot do anything useful. */
typedef struct buf {
	char *data;
	size_t len, cap;
} buf;

static void buf_grow(buf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	b->data = (char *)realloc(b->data, cap);
	if (b->data == NULL)
		abort();
	b->cap = cap;
}

static void buf_add(buf *b, const char *s, size_t n)
{
	buf_grow(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void buf_str(buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* buf_quote appends s as a JSON string (with only the escapes JSON needs). */
static void buf_quote(buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	buf_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			buf_add(b, e, 2);
		} else if (c == '\n') {
			buf_add(b, "\\n", 2);
		} else if (c == '\r') {
			buf_add(b, "\\r", 2);
		} else if (c == '\t') {
			buf_add(b, "\\t", 2);
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			buf_add(b, e, 6);
		} else {
			buf_add(b, (const char *)&s[i], 1);
		}
	}
	buf_add(b, "\"", 1);
}

static void buf_qstr(buf *b, const char *s) { buf_quote(b, s, strlen(s)); }

#endif /* DOCPIPELINE_JSON_H */
