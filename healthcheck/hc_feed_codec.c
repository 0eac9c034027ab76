/*
 * hc_feed_codec.c — encoder and decoder of the health feed's text lines.
 *
 * The format is described in hc_feed.h. Parsing is tolerant (unknown line
 * types are ignored, extra spaces are accepted) and emission conservative
 * (single spaces, sanitised reason, names checked against the seed syntax).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hc_feed.h"

/* Returns the text of a state for the feed and logs. */
const char *hc_state_str(enum hc_state st)
{
	switch (st) {
	case HC_UP:    return "up";
	case HC_DOWN:  return "down";
	case HC_DRAIN: return "drain";
	}
	return "?";
}

/* Parses a state word of exactly len bytes; 0 and *st set, or -1. */
int hc_state_parse(const char *s, size_t len, enum hc_state *st)
{
	if (len == 2 && memcmp(s, "up", 2) == 0)
		*st = HC_UP;
	else if (len == 4 && memcmp(s, "down", 4) == 0)
		*st = HC_DOWN;
	else if (len == 5 && memcmp(s, "drain", 5) == 0)
		*st = HC_DRAIN;
	else
		return -1;
	return 0;
}

/* True when s is a seed name: [A-Za-z0-9_.-]{1,32}. */
static bool feed_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > HC_FEED_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

/* True for a token that may appear as a field: printable, no space. */
static bool feed_token_ok(const char *s, size_t max)
{
	size_t len = strlen(s);

	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] == 0x7f)
			return false;
	return true;
}

/* A byte of a reason as it travels: control bytes and DEL become spaces.
 * The encoder and the decoder both use it, so they agree on every byte. */
static char feed_clean_byte(char ch)
{
	unsigned char c = (unsigned char)ch;

	return (c < ' ' || c == 0x7f) ? ' ' : ch;
}

/* Finishes a line built with snprintf: -1 when it was cut. */
static int feed_finish(int n, size_t room)
{
	if (n < 0 || (size_t)n >= room || n >= HC_FEED_LINE_MAX)
		return -1;
	return n;
}

/* Writes the greeting line. */
int hc_feed_encode_hello(char *buf, size_t room)
{
	return feed_finish(snprintf(buf, room, "H seedgate-health %d\n", HC_FEED_VERSION), room);
}

/* Writes a T line. addr NULL or "" is sent as "-"; reason NULL as empty. */
int hc_feed_encode_target(char *buf, size_t room, const char *name, enum hc_state st,
                          const char *addr, int64_t since_ms, const char *reason)
{
	char clean[HC_FEED_REASON_MAX + 1];
	size_t i;

	if (!name || !feed_name_ok(name, strlen(name)) || (st != HC_UP && st != HC_DOWN && st != HC_DRAIN))
		return -1;
	if (!addr || !*addr)
		addr = "-";
	if (!feed_token_ok(addr, HC_FEED_ADDR_MAX))
		return -1;
	for (i = 0; reason && reason[i] && i < HC_FEED_REASON_MAX; i++)
		clean[i] = feed_clean_byte(reason[i]);
	clean[i] = '\0';
	return feed_finish(snprintf(buf, room, "T %s %s %s %" PRId64 " %s\n", name, hc_state_str(st),
	                            addr, since_ms, clean), room);
}

/* Writes an S line (details for the status table). */
int hc_feed_encode_detail(char *buf, size_t room, const char *name, const char *kind,
                          const char *dc, int64_t last_check_ms, uint64_t latency_us,
                          uint64_t checks, uint64_t fails)
{
	if (!name || !feed_name_ok(name, strlen(name)) || !kind || !feed_token_ok(kind, 7) ||
	    !dc || !feed_name_ok(dc, strlen(dc)))
		return -1;
	return feed_finish(snprintf(buf, room, "S %s %s %s %" PRId64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
	                            name, kind, dc, last_check_ms, latency_us, checks, fails), room);
}

/* Writes the end-of-snapshot line. */
int hc_feed_encode_end(char *buf, size_t room, uint64_t count)
{
	return feed_finish(snprintf(buf, room, "E %" PRIu64 "\n", count), room);
}

/* A cursor over one line for the decoder. */
struct feed_cur {
	const char *p, *end;
};

/* Next space-separated word: sets *w and *wlen; false when none is left. */
static bool cur_word(struct feed_cur *c, const char **w, size_t *wlen)
{
	while (c->p < c->end && *c->p == ' ')
		c->p++;
	if (c->p >= c->end)
		return false;
	*w = c->p;
	while (c->p < c->end && *c->p != ' ')
		c->p++;
	*wlen = (size_t)(c->p - *w);
	return true;
}

/* Copies a word into a bounded NUL-terminated buffer; false if too long. */
static bool word_copy(char *dst, size_t room, const char *w, size_t len)
{
	if (len >= room)
		return false;
	memcpy(dst, w, len);
	dst[len] = '\0';
	return true;
}

/* Parses an unsigned decimal word (at most 19 digits, no sign). */
static bool word_u64(const char *w, size_t len, uint64_t *v)
{
	uint64_t x = 0;

	if (len == 0 || len > 19)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (w[i] < '0' || w[i] > '9')
			return false;
		x = x * 10 + (uint64_t)(w[i] - '0');
	}
	*v = x;
	return true;
}

/* Parses a signed decimal word (optional '-'). */
static bool word_i64(const char *w, size_t len, int64_t *v)
{
	uint64_t u;
	bool neg = len > 0 && w[0] == '-';

	if (!word_u64(w + neg, len - neg, &u))
		return false;
	*v = neg ? -(int64_t)u : (int64_t)u;
	return true;
}

/* Decodes a T line after its type letter. */
static int decode_target(struct feed_cur *c, struct hc_feed_rec *rec)
{
	const char *w;
	size_t len;

	if (!cur_word(c, &w, &len) || !feed_name_ok(w, len) || !word_copy(rec->name, sizeof(rec->name), w, len))
		return -1;
	if (!cur_word(c, &w, &len) || hc_state_parse(w, len, &rec->state) == -1)
		return -1;
	if (!cur_word(c, &w, &len) || !word_copy(rec->addr, sizeof(rec->addr), w, len))
		return -1;
	if (strcmp(rec->addr, "-") == 0)
		rec->addr[0] = '\0';
	if (!cur_word(c, &w, &len) || !word_i64(w, len, &rec->since_ms))
		return -1;
	/* reason: the rest of the line after one separating space, possibly empty */
	if (c->p < c->end && *c->p == ' ')
		c->p++;
	len = (size_t)(c->end - c->p);
	if (len > HC_FEED_REASON_MAX)
		len = HC_FEED_REASON_MAX;
	memcpy(rec->reason, c->p, len);
	rec->reason[len] = '\0';
	/* exactly what the encoder does (feed_clean_byte): a reason decoded
	 * then encoded again is the same text */
	for (size_t i = 0; i < len; i++)
		rec->reason[i] = feed_clean_byte(rec->reason[i]);
	return 1;
}

/* Decodes an S line after its type letter. */
static int decode_detail(struct feed_cur *c, struct hc_feed_rec *rec)
{
	const char *w;
	size_t len;

	if (!cur_word(c, &w, &len) || !feed_name_ok(w, len) || !word_copy(rec->name, sizeof(rec->name), w, len))
		return -1;
	if (!cur_word(c, &w, &len) || !word_copy(rec->kind, sizeof(rec->kind), w, len))
		return -1;
	if (!cur_word(c, &w, &len) || !word_copy(rec->dc, sizeof(rec->dc), w, len))
		return -1;
	if (!cur_word(c, &w, &len) || !word_i64(w, len, &rec->last_check_ms))
		return -1;
	if (!cur_word(c, &w, &len) || !word_u64(w, len, &rec->latency_us))
		return -1;
	if (!cur_word(c, &w, &len) || !word_u64(w, len, &rec->checks))
		return -1;
	if (!cur_word(c, &w, &len) || !word_u64(w, len, &rec->fails))
		return -1;
	return 1;
}

/* Decodes one line; see hc_feed.h for the return values. */
int hc_feed_decode(const char *line, size_t len, struct hc_feed_rec *rec)
{
	struct feed_cur c = { line, line + len };
	const char *w;
	size_t wlen;
	uint64_t v;

	while (c.end > c.p && (c.end[-1] == '\n' || c.end[-1] == '\r'))
		c.end--;
	memset(rec, 0, sizeof(*rec));
	if (c.end - c.p < 1)
		return 0;
	if (c.end - c.p >= 2 && c.p[1] != ' ')
		return 0;              /* "Tfoo": not one of ours */
	rec->type = (enum hc_feed_rec_type)c.p[0];
	c.p++;
	switch (rec->type) {
	case HC_FEED_TARGET:
		return decode_target(&c, rec);
	case HC_FEED_DETAIL:
		return decode_detail(&c, rec);
	case HC_FEED_END:
		if (!cur_word(&c, &w, &wlen) || !word_u64(w, wlen, &rec->count))
			return -1;
		return 1;
	case HC_FEED_HELLO:
		if (!cur_word(&c, &w, &wlen) || wlen != 15 || memcmp(w, "seedgate-health", 15) != 0)
			return -1;
		if (!cur_word(&c, &w, &wlen) || !word_u64(w, wlen, &v) || v > 1000000)
			return -1;
		rec->version = (unsigned)v;
		return 1;
	}
	return 0;
}
