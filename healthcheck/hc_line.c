/*
 * hc_line.c — bounded line splitter for the health feed.
 *
 * Bytes arrive in arbitrary pieces from a socket; lines are handed on whole.
 * The buffer is fixed (HC_FEED_LINE_MAX) so a peer that never sends '\n'
 * cannot make the reader grow: such a line is dropped up to its end.
 */
#include <string.h>

#include "hc_feed.h"

/* Resets a splitter to "no partial line". */
void hc_line_buf_init(struct hc_line_buf *lb)
{
	lb->len = 0;
	lb->skipping = false;
	lb->overlong = 0;
}

/* Splits data into lines; calls cb(udata, line, len) for each complete line
 * (without its '\n'). Lines that fit entirely in data are passed in place,
 * without a copy; only a partial tail is kept in lb->buf. */
void hc_line_buf_feed(struct hc_line_buf *lb, const char *data, size_t len,
                      hc_line_cb cb, void *udata)
{
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t take = nl ? (size_t)(nl - data) : len;

		if (lb->skipping) {
			if (nl)
				lb->skipping = false;
		} else if (lb->len + take + (nl ? 1 : 0) > HC_FEED_LINE_MAX) {
			/* too long once the '\n' is counted: drop it whole */
			lb->len = 0;
			lb->overlong++;
			lb->skipping = !nl;
		} else if (nl && lb->len == 0) {
			cb(udata, data, take);
		} else {
			memcpy(lb->buf + lb->len, data, take);
			lb->len += take;
			if (nl) {
				size_t l = lb->len;
				lb->len = 0;
				cb(udata, lb->buf, l);
			}
		}
		if (!nl)
			break;
		data = nl + 1;
		len -= take + 1;
	}
}
