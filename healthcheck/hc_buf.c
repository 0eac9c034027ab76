/*
 * hc_buf.c — the growable output queue healthcheckd's sockets share (feed
 * subscribers, HAProxy command pipes, stats responses).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hc_daemon.h"

/* Makes room for len more bytes, compacting consumed space first. */
static int buf_reserve(struct hcd_buf *b, size_t len)
{
	if (b->off > 0 && b->off == b->len) {
		b->off = b->len = 0;
	} else if (b->off > 0 && b->len + len > b->cap) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->len + len)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	return 0;
}

/* Appends len bytes. 0 or -1 on allocation failure. */
int hcd_buf_append(struct hcd_buf *b, const void *data, size_t len)
{
	if (buf_reserve(b, len) == -1)
		return -1;
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

/* Appends formatted text. 0 or -1. */
int hcd_buf_printf(struct hcd_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n + 1) == -1)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* Bytes queued and not yet written. */
size_t hcd_buf_pending(const struct hcd_buf *b)
{
	return b->len - b->off;
}

/* Writes as much as the socket takes. 0 (maybe with bytes left) or -1. */
int hcd_buf_flush(struct hcd_buf *b, int fd)
{
	while (b->off < b->len) {
		ssize_t n = write(fd, b->p + b->off, b->len - b->off);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		b->off += (size_t)n;
	}
	b->off = b->len = 0;
	return 0;
}

/* Drops queued bytes, keeps the memory. */
void hcd_buf_reset(struct hcd_buf *b)
{
	b->off = b->len = 0;
}

/* Frees the memory. */
void hcd_buf_free(struct hcd_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->off = b->len = b->cap = 0;
}
