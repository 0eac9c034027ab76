/*
 * hc_http.c — the HTTP half of an HTTP(S) check: the request we send and
 * the status line we read back. Only the status line matters; the check
 * closes the connection as soon as it has it.
 */
#include <stdio.h>
#include <string.h>

#include "hc_check.h"

/* True when s is non-empty and holds no byte that would break the line. */
static bool http_field_ok(const char *s, bool allow_space)
{
	if (!s || !*s)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < ' ' || c == 0x7f || (!allow_space && c == ' '))
			return false;
	}
	return true;
}

/* Builds the check request; see hc_check.h. */
int hc_http_request(char *buf, size_t room, const char *method, const char *path,
                    const char *host)
{
	int n;

	if (!http_field_ok(method, false) || !http_field_ok(path, false) || !http_field_ok(host, false))
		return -1;
	n = snprintf(buf, room, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: seedgate-healthcheckd\r\n"
	             "Accept: */*\r\n\r\n", method, path, host);
	if (n < 0 || (size_t)n >= room)
		return -1;
	return n;
}

/* See hc_check.h. Built aside first: a bad field leaves r untouched. */
int hc_http_req_set(struct hc_http_req *r, const char *method, const char *path, const char *host)
{
	char buf[HC_HTTP_REQ_MAX];
	int n = hc_http_request(buf, sizeof(buf), method, path, host);

	if (n == -1)
		return -1;
	memcpy(r->buf, buf, (size_t)n);
	r->len = (size_t)n;
	r->woff = 0;
	return n;
}

/* See hc_check.h. */
const char *hc_http_req_rest(const struct hc_http_req *r, size_t *n)
{
	*n = r->woff < r->len ? r->len - r->woff : 0;
	return r->buf + (r->woff < r->len ? r->woff : r->len);
}

/* See hc_check.h. */
bool hc_http_req_wrote(struct hc_http_req *r, size_t n)
{
	size_t left;

	(void)hc_http_req_rest(r, &left);
	r->woff += n < left ? n : left;
	return r->woff >= r->len;
}

/* See hc_check.h. */
void hc_http_req_rewind(struct hc_http_req *r)
{
	r->woff = 0;
}

/* Parses "HTTP/<d>.<d> <ddd><SP|CR|LF>"; see hc_check.h. Each byte received
 * so far is checked, so garbage is rejected as early as its first bad byte. */
int hc_http_status(const char *buf, size_t len, unsigned *status)
{
	static const char proto[] = "HTTP/";
	size_t i;
	unsigned code = 0;

	for (i = 0; i < 5; i++) {
		if (i >= len)
			return 0;
		if (buf[i] != proto[i])
			return -1;
	}
	/* major version: one digit, '.', minor: one digit (HTTP/1.0, 1.1; "HTTP/2" has none) */
	if (i >= len) return 0;
	if (buf[i] < '0' || buf[i] > '9') return -1;
	i++;
	if (i >= len) return 0;
	if (buf[i] == '.') {
		i++;
		if (i >= len) return 0;
		if (buf[i] < '0' || buf[i] > '9') return -1;
		i++;
	}
	if (i >= len) return 0;
	if (buf[i] != ' ') return -1;
	i++;
	for (unsigned d = 0; d < 3; d++, i++) {
		if (i >= len) return 0;
		if (buf[i] < '0' || buf[i] > '9') return -1;
		code = code * 10 + (unsigned)(buf[i] - '0');
	}
	if (i >= len) return 0;
	if (buf[i] != ' ' && buf[i] != '\r' && buf[i] != '\n') return -1;
	if (code < 100) return -1;
	*status = code;
	return 1;
}
