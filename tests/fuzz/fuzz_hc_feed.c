/*
 * fuzz_hc_feed.c — the health feed's line splitter and decoder.
 *
 * Input: arbitrary bytes as a subscriber would read them from the feed
 * socket, fed in two pieces (split at the first byte's value) to exercise
 * partial lines. Every decoded T/S/E record is re-encoded and decoded again:
 * the second decode must succeed and give the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hc_feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes one line and checks the encode/decode round trip. */
static void fuzz_line(void *udata, const char *line, size_t len)
{
	struct hc_feed_rec a, b;
	char out[HC_FEED_LINE_MAX + 1];
	int n = -1;

	(void)udata;
	if (len >= HC_FEED_LINE_MAX)
		abort();                      /* the splitter bounds lines */
	if (hc_feed_decode(line, len, &a) != 1)
		return;
	switch (a.type) {
	case HC_FEED_TARGET:
		n = hc_feed_encode_target(out, sizeof(out), a.name, a.state, a.addr, a.since_ms, a.reason);
		break;
	case HC_FEED_END:
		n = hc_feed_encode_end(out, sizeof(out), a.count);
		break;
	case HC_FEED_HELLO:
		return;
	case HC_FEED_DETAIL:
		/* kind and dc are free words on decode; only re-encode valid ones */
		n = hc_feed_encode_detail(out, sizeof(out), a.name, a.kind, a.dc, a.last_check_ms,
		                          a.latency_us, a.checks, a.fails);
		if (n == -1)
			return;
		break;
	}
	if (n == -1) {
		/* an address word may hold bytes the encoder refuses; nothing else */
		if (a.type == HC_FEED_TARGET)
			return;
		abort();
	}
	if (hc_feed_decode(out, (size_t)n, &b) != 1 || b.type != a.type || strcmp(a.name, b.name) != 0 ||
	    a.state != b.state || strcmp(a.addr, b.addr) != 0 || a.since_ms != b.since_ms ||
	    a.count != b.count || a.checks != b.checks || a.latency_us != b.latency_us)
		abort();
	if (a.type == HC_FEED_TARGET && strcmp(a.reason, b.reason) != 0) {
		/* the decoder keeps leading spaces of a reason; the encoder too */
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hc_line_buf lb;
	size_t cut = size ? data[0] % (size + 1) : 0;

	hc_line_buf_init(&lb);
	hc_line_buf_feed(&lb, (const char *)data, cut, fuzz_line, NULL);
	hc_line_buf_feed(&lb, (const char *)data + cut, size - cut, fuzz_line, NULL);
	return 0;
}
