/*
 * sd_layout.c — the seed directory's layout in etcd (see seeddir.h): parsing
 * an etcd:// spec, turning the records of one revision into the text form
 * (and a directory), and splitting a text directory into records.
 *
 * No I/O: the etcd clients (the daemons' async one, seedctl's blocking one)
 * fetch the records; this file only knows what the keys mean. Every rule
 * about a key is checked here so that the daemons and seedctl reject the
 * same directories with the same messages ("KEY: message").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seeddir.h"

#define ETCD_SCHEME     "etcd://"
#define PARSE_FILENAME  "etcd"        /* labels the assembled text for the parser */
#define KEY_SHOW_MAX    200           /* longest key quoted in a message */

bool sd_is_etcd(const char *spec)
{
	return spec && !strncmp(spec, ETCD_SCHEME, sizeof(ETCD_SCHEME) - 1);
}

/* ---------------------------------------------------------------------------
 * Spec: etcd://HOST:PORT[,HOST:PORT...]/PREFIX
 */

/* Dotted quad, each part 0-255 without leading zeros. */
static bool valid_ipv4(const char *s, size_t len)
{
	unsigned parts = 0, v = 0, digits = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (digits == 0 || v > 255 || (digits > 1 && s[i - digits] == '0'))
				return false;
			parts++;
			v = digits = 0;
			continue;
		}
		if (s[i] < '0' || s[i] > '9' || ++digits > 3)
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	return parts == 4;
}

/* The inside of [...]: hex groups and colons (and a trailing dotted quad),
 * at most one "::". Loose on purpose beyond that: libcurl does the rest and
 * reports what it cannot use, naming the endpoint. */
static bool valid_ipv6(const char *s, size_t len)
{
	unsigned colons = 0;
	bool dbl = false;

	if (len < 2 || len > 45)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == ':') {
			colons++;
			if (i + 1 < len && s[i + 1] == ':') {
				if (dbl)
					return false;
				dbl = true;
			}
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.'))
			return false;
	}
	return colons >= 2 && colons <= 7;
}

/* "1".."65535", no sign, no leading zero. */
static bool valid_port(const char *s, size_t len)
{
	unsigned v = 0;

	if (len == 0 || len > 5 || s[0] == '0')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	return v <= 65535;
}

static int spec_err(char *err, size_t errlen, const char *fmt, const char *a, size_t alen)
{
	char piece[128];

	snprintf(piece, sizeof(piece), "%.*s", (int)(alen > 100 ? 100 : alen), a ? a : "");
	snprintf(err, errlen, fmt, piece);
	return -1;
}

/* One "HOST:PORT" of the list into out->endpoint[out->n]. */
static int parse_endpoint(const char *s, size_t len, struct sd_etcd_spec *out, char *err, size_t errlen)
{
	const char *colon;
	size_t hlen;

	if (len == 0)
		return spec_err(err, errlen, "etcd spec: empty endpoint in the list%s", "", 0);
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (!close || close + 1 >= s + len || close[1] != ':' ||
		    !valid_ipv6(s + 1, (size_t)(close - s - 1)))
			return spec_err(err, errlen, "etcd spec: bad endpoint '%s' (expected [v6]:port)", s, len);
		colon = close + 1;
	} else {
		colon = memchr(s, ':', len);
		if (!colon)
			return spec_err(err, errlen, "etcd spec: endpoint '%s' has no :port", s, len);
		hlen = (size_t)(colon - s);
		if (memchr(colon + 1, ':', len - hlen - 1))
			return spec_err(err, errlen, "etcd spec: bad endpoint '%s' (write IPv6 as [addr]:port)", s, len);
		if (!valid_ipv4(s, hlen) && !router_hostname_valid(s, hlen))
			return spec_err(err, errlen, "etcd spec: bad host in '%s' (IPv4, [IPv6] or host name)", s, len);
	}
	if (!valid_port(colon + 1, len - (size_t)(colon + 1 - s)))
		return spec_err(err, errlen, "etcd spec: bad port in '%s' (1-65535)", s, len);
	if (out->n == SD_MAX_ENDPOINTS) {
		snprintf(err, errlen, "etcd spec: too many endpoints (max %d)", SD_MAX_ENDPOINTS);
		return -1;
	}
	snprintf(out->endpoint[out->n], SD_ENDPOINT_MAX, "http://%.*s", (int)len, s);
	for (unsigned i = 0; i < out->n; i++)
		if (!strcmp(out->endpoint[i], out->endpoint[out->n]))
			return spec_err(err, errlen, "etcd spec: endpoint '%s' given twice", s, len);
	out->n++;
	return 0;
}

/* Prefix: '/' then components of [A-Za-z0-9_.-], no empty, "." or ".."
 * component, no trailing '/'. Keys are built by appending "/..." to it, so
 * anything looser would let two spellings name one directory. */
static int parse_prefix(const char *p, struct sd_etcd_spec *out, char *err, size_t errlen)
{
	size_t len = strlen(p), comp = 0;

	if (len <= 1)
		return spec_err(err, errlen, "etcd spec: no key prefix (etcd://HOST:PORT/PREFIX; "
		                "a directory never owns the whole key space)%s", "", 0);
	if (len >= SD_PREFIX_MAX)
		return spec_err(err, errlen, "etcd spec: key prefix longer than 255 bytes%s", "", 0);
	for (size_t i = 1; i <= len; i++) {
		char c = p[i];

		if (c == '/' || c == '\0') {
			if (comp == 0 || (comp == 1 && p[i - 1] == '.') ||
			    (comp == 2 && p[i - 1] == '.' && p[i - 2] == '.'))
				return spec_err(err, errlen, "etcd spec: bad key prefix '%s' (empty, '.' or '..' "
				                "component, or trailing '/')", p, len);
			comp = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return spec_err(err, errlen, "etcd spec: bad key prefix '%s' (characters "
			                "[A-Za-z0-9_.-] and '/')", p, len);
		comp++;
	}
	memcpy(out->prefix, p, len + 1);
	return 0;
}

int sd_etcd_spec_parse(const char *spec, struct sd_etcd_spec *out, char *err, size_t errlen)
{
	const char *list, *slash, *s;

	if (errlen)
		err[0] = '\0';
	memset(out, 0, sizeof(*out));
	if (!sd_is_etcd(spec)) {
		snprintf(err, errlen, "etcd spec: must start with etcd://");
		return -1;
	}
	list = spec + sizeof(ETCD_SCHEME) - 1;
	slash = strchr(list, '/');
	if (!slash)
		return spec_err(err, errlen, "etcd spec: no key prefix (etcd://HOST:PORT/PREFIX)%s", "", 0);
	for (s = list; ; ) {
		const char *comma = memchr(s, ',', (size_t)(slash - s));
		const char *end = comma ? comma : slash;

		if (parse_endpoint(s, (size_t)(end - s), out, err, errlen) == -1)
			return -1;
		if (!comma)
			break;
		s = comma + 1;
	}
	return parse_prefix(slash, out, err, errlen);
}

/* ---------------------------------------------------------------------------
 * Records -> text
 */

/* Groups, in the order the text form gets them. */
enum sd_group { G_REPLICAS, G_RING_SCALE, G_NODE_SHARDS, G_DEFAULTS, G_DC, G_HUB, G_NODE, G_POOL, G_SERVER, G_ROUTE, G_LIVE, G_PROJECT,
                G_IGNORE };

/* The directory-wide settings: one key each, g/<GEN>/<keyword>, holding
 * "<keyword> ...", in the order of their groups above (G_REPLICAS on).
 * A setting added to the text parser goes here, and nowhere else. */
static const char *const settings[] = { "replicas", "ring-scale", "node-shards", "check-defaults" };
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

/* Index of the setting kw[0..len), or -1. */
static int setting_index(const char *kw, size_t len)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strlen(settings[i]) == len && !memcmp(kw, settings[i], len))
			return (int)i;
	return -1;
}

bool sd_setting(const char *kw)
{
	return setting_index(kw, strlen(kw)) >= 0;
}

struct sd_item {
	const struct sd_record *r;
	enum sd_group g;
};

/* Quotes a key for a message: printable ASCII as is, anything else \xNN,
 * cut at KEY_SHOW_MAX bytes (a key is attacker-sized: etcd allows 1.5 MB). */
static void key_show(const char *k, size_t len, char *out, size_t room)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 5 < room; i++) {
		unsigned char c = (unsigned char)k[i];

		if (i == KEY_SHOW_MAX) {
			o += (size_t)snprintf(out + o, room - o, "...");
			break;
		}
		if (c >= 0x20 && c < 0x7f)
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, room - o, "\\x%02x", c);
	}
	out[o < room ? o : room - 1] = '\0';
}

static int rec_err(const struct sd_record *r, char *err, size_t errlen, const char *msg)
{
	char k[KEY_SHOW_MAX * 4 + 8];

	key_show(r->key, r->key_len, k, sizeof(k));
	snprintf(err, errlen, "%s: %s", k, msg);
	return -1;
}

/* Decimal without sign or leading zero, at most 19 digits (fits int64). */
static bool valid_gen(const char *g, size_t len)
{
	if (len == 0 || len > 19 || (g[0] == '0'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (g[i] < '0' || g[i] > '9')
			return false;
	return true;
}

/* The i-th blank-separated word of a one-line value (comments cut), as the
 * text parser would split it. false when there are fewer words. */
static bool value_word(const char *v, size_t len, unsigned i, const char **w, size_t *wlen)
{
	size_t p = 0;

	for (unsigned k = 0; ; k++) {
		while (p < len && v[p] && strchr(" \t\r\v\f", v[p]))
			p++;
		if (p == len || v[p] == '#')
			return false;
		size_t start = p;

		while (p < len && (!v[p] || !strchr(" \t\r\v\f#", v[p])))
			p++;
		if (k == i) {
			*w = v + start;
			*wlen = p - start;
			return true;
		}
	}
}

static bool word_is(const char *v, size_t len, unsigned i, const char *want, size_t wantlen)
{
	const char *w;
	size_t wl;

	return value_word(v, len, i, &w, &wl) && wl == wantlen && !memcmp(w, want, wl);
}

/* A key and its value agree: the value's keyword is the key's kind, its
 * name (or project id) is the key's last component. Returns 0 or -1 + err. */
static int check_value(const struct sd_record *r, enum sd_group g, const char *tail, size_t tlen,
                       char *err, size_t errlen)
{
	static const char *const kw[] = { "dc", "hub", "node", "pool", "server", "route", NULL, "project" };
	const char *v = r->value, *want = g < G_DC ? settings[g - G_REPLICAS] : kw[g - G_DC];
	size_t vl = r->value_len;
	char msg[160];

	if (g == G_LIVE)
		want = tail[-2] == 'b' ? "hub" : "node";   /* live/hub/NAME or live/node/NAME */
	for (size_t i = 0; i < vl; i++)
		if (v[i] == '\n' || v[i] == '\r' || v[i] == '\0')
			return rec_err(r, err, errlen, v[i] == '\0' ? "NUL byte in value (a value is one line)" :
			               "line break in value (a value is exactly one line)");
	if (!word_is(v, vl, 0, want, strlen(want))) {
		snprintf(msg, sizeof(msg), "value is not a '%s' line", want);
		return rec_err(r, err, errlen, msg);
	}
	switch (g) {
	case G_HUB: case G_NODE: case G_LIVE: case G_POOL: case G_SERVER:  /* dc/NNNN: a position */
		if (!word_is(v, vl, 1, tail, tlen)) {
			snprintf(msg, sizeof(msg), "the %s's name in the value differs from the key", want);
			return rec_err(r, err, errlen, msg);
		}
		break;
	case G_ROUTE: {                         /* route/download/files: "route /download/files POOL" */
		const char *w;
		size_t wl;

		if (!value_word(v, vl, 1, &w, &wl) || wl != tlen + 1 || w[0] != '/' || memcmp(w + 1, tail, tlen))
			return rec_err(r, err, errlen, "the route's prefix in the value differs from the key "
			               "(route/PREFIX-without-its-leading-slash)");
		break;
	}
	case G_PROJECT: {
		const char *w;
		size_t wl;
		uint8_t id[16];
		char canon[37];

		if (!value_word(v, vl, 1, &w, &wl) || router_project_parse(w, wl, id) == -1)
			return rec_err(r, err, errlen, "bad project id in the value (8-4-4-4-12 hex digits)");
		router_project_format(id, canon);
		if (tlen != 36 || memcmp(canon, tail, 36))
			return rec_err(r, err, errlen, "key must be the lower-case project id of the value");
		break;
	}
	default:
		break;
	}
	return 0;
}

/* dc/NNNN: exactly 4 digits, 0001 first (the key is not NUL-terminated). */
static bool valid_dc_pos(const char *t, size_t len)
{
	if (len != 4 || !memcmp(t, "0000", 4))
		return false;
	for (size_t i = 0; i < 4; i++)
		if (t[i] < '0' || t[i] > '9')
			return false;
	return true;
}

/* Classifies one record against prefix/gen: its group, and for named
 * groups the name part of the key (tail). -1 + err for a key under the
 * generation or live/ that means nothing. */
static int classify(const char *prefix, size_t plen, const char *gen, size_t glen,
                    const struct sd_record *r, enum sd_group *g, const char **tail, size_t *tlen,
                    char *err, size_t errlen)
{
	const char *k = r->key, *rest;
	size_t kl = r->key_len, rl;
	static const struct { const char *pfx; enum sd_group g; } named[] = {
		{ "dc/", G_DC }, { "hub/", G_HUB }, { "node/", G_NODE }, { "project/", G_PROJECT },
		{ "pool/", G_POOL }, { "server/", G_SERVER }, { "route/", G_ROUTE },
	};

	*g = G_IGNORE;
	if (kl <= plen + 1 || memcmp(k, prefix, plen) || k[plen] != '/')
		return 0;
	rest = k + plen + 1;
	rl = kl - plen - 1;
	if (rl > 5 && !memcmp(rest, "live/", 5)) {
		rest += 5;
		rl -= 5;
		if (rl > 4 && !memcmp(rest, "hub/", 4)) {
			*tail = rest + 4;
			*tlen = rl - 4;
		} else if (rl > 5 && !memcmp(rest, "node/", 5)) {
			*tail = rest + 5;
			*tlen = rl - 5;
		} else
			return rec_err(r, err, errlen, "unknown key under live/ (live/hub/NAME or live/node/NAME)");
		*g = G_LIVE;
		return 0;
	}
	if (rl < 2 + glen + 1 || memcmp(rest, "g/", 2) || memcmp(rest + 2, gen, glen) || rest[2 + glen] != '/')
		return 0;                    /* another generation, current, or foreign: not ours */
	rest += 3 + glen;
	rl -= 3 + glen;
	int si = setting_index(rest, rl);

	if (si >= 0) {
		*g = (enum sd_group)(G_REPLICAS + si);
		return 0;
	}
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		size_t nl = strlen(named[i].pfx);

		if (rl > nl && !memcmp(rest, named[i].pfx, nl)) {
			*g = named[i].g;
			*tail = rest + nl;
			*tlen = rl - nl;
			if (*g == G_DC && !valid_dc_pos(*tail, *tlen))
				return rec_err(r, err, errlen, "dc position must be 4 digits, 0001-9999");
			return 0;
		}
	}
	return rec_err(r, err, errlen, "unknown key in the generation");
}

static int item_cmp(const void *a, const void *b)
{
	const struct sd_item *x = a, *y = b;
	size_t n;
	int c;

	if (x->g != y->g)
		return x->g < y->g ? -1 : 1;
	n = x->r->key_len < y->r->key_len ? x->r->key_len : y->r->key_len;
	c = memcmp(x->r->key, y->r->key, n);
	if (c)
		return c;
	return x->r->key_len < y->r->key_len ? -1 : x->r->key_len > y->r->key_len;
}

/* Checks every record and assembles the text: *items (malloc'd, sorted, one
 * per text line, in line order) and the text. NULL + err. */
static char *assemble(const char *prefix, const char *gen, const struct sd_record *recs, size_t n,
                      size_t *len, struct sd_item **items_out, size_t *nitems_out,
                      char *err, size_t errlen)
{
	size_t plen = prefix ? strlen(prefix) : 0, glen = gen ? strlen(gen) : 0, ni = 0, tlen = 0;
	struct sd_item *items;
	char *text;

	if (errlen)
		err[0] = '\0';
	if (!prefix || plen == 0) {
		snprintf(err, errlen, "no key prefix");
		return NULL;
	}
	if (!gen) {
		snprintf(err, errlen, "%.*s/current: missing (no directory was imported)", SD_PREFIX_MAX, prefix);
		return NULL;
	}
	if (!valid_gen(gen, glen)) {
		char g[64];

		key_show(gen, glen, g, sizeof(g) < 40 ? sizeof(g) : 40);
		snprintf(err, errlen, "%.*s/current: bad generation '%s' (a decimal number)", SD_PREFIX_MAX,
		         prefix, g);
		return NULL;
	}
	items = malloc((n ? n : 1) * sizeof(*items));
	if (!items) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *tail = NULL;
		size_t tl = 0;
		enum sd_group g;

		if (classify(prefix, plen, gen, glen, &recs[i], &g, &tail, &tl, err, errlen) == -1)
			goto fail;
		if (g == G_IGNORE)
			continue;
		if (check_value(&recs[i], g, tail, tl, err, errlen) == -1)
			goto fail;
		items[ni].r = &recs[i];
		items[ni].g = g;
		ni++;
		tlen += recs[i].value_len + 1;
	}
	qsort(items, ni, sizeof(*items), item_cmp);
	for (size_t i = 1; i < ni; i++)
		if (!item_cmp(&items[i - 1], &items[i])) {
			rec_err(items[i].r, err, errlen, "key given twice");
			goto fail;
		}
	text = malloc(tlen + 1);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	tlen = 0;
	for (size_t i = 0; i < ni; i++) {
		memcpy(text + tlen, items[i].r->value, items[i].r->value_len);
		tlen += items[i].r->value_len;
		text[tlen++] = '\n';
	}
	text[tlen] = '\0';
	*len = tlen;
	*items_out = items;
	*nitems_out = ni;
	return text;
fail:
	free(items);
	return NULL;
}

/* Rewrites the parser's "etcd:LINE: message" as "KEY: message", and every
 * "on line N" inside the message as "at KEY" (duplicates name their first
 * occurrence by line). Errors without a line (ring build) get the
 * generation's key prefix. */
static void map_error(const char *prefix, const char *gen, const struct sd_item *items, size_t ni,
                      const char *perr, char *err, size_t errlen)
{
	static const char fpfx[] = PARSE_FILENAME ":";
	char k[KEY_SHOW_MAX * 4 + 8], out[1024];
	const char *msg = perr;
	unsigned long line = 0;
	size_t o = 0;

	if (!strncmp(perr, fpfx, sizeof(fpfx) - 1)) {
		char *end;

		line = strtoul(perr + sizeof(fpfx) - 1, &end, 10);
		msg = !strncmp(end, ": ", 2) ? end + 2 : end;
	}
	if (line >= 1 && line <= ni && strncmp(msg, "no datacenter declared", 22)) {
		key_show(items[line - 1].r->key, items[line - 1].r->key_len, k, sizeof(k));
	} else
		snprintf(k, sizeof(k), "%.*s/g/%.20s/", KEY_SHOW_MAX, prefix, gen);
	o = (size_t)snprintf(out, sizeof(out), "%s: ", k);
	while (*msg && o + 1 < sizeof(out)) {
		if (!strncmp(msg, "on line ", 8) && msg[8] >= '0' && msg[8] <= '9') {
			char *end;
			unsigned long l = strtoul(msg + 8, &end, 10);

			if (l >= 1 && l <= ni) {
				key_show(items[l - 1].r->key, items[l - 1].r->key_len, k, sizeof(k));
				o += (size_t)snprintf(out + o, sizeof(out) - o, "at %s", k);
				if (o >= sizeof(out))
					o = sizeof(out) - 1;
				msg = end;
				continue;
			}
		}
		out[o++] = *msg++;
	}
	out[o] = '\0';
	snprintf(err, errlen, "%s", out);
}

struct router_dir *sd_build(const char *prefix, const char *gen, const struct sd_record *recs,
                            size_t n, unsigned flags, char *err, size_t errlen)
{
	struct sd_item *items = NULL;
	size_t len = 0, ni = 0;
	char *text = assemble(prefix, gen, recs, n, &len, &items, &ni, err, errlen);
	struct router_dir *d;
	char perr[1024];

	if (!text)
		return NULL;
	d = router_dir_parse_flags(text, len, PARSE_FILENAME, flags, perr, sizeof(perr));
	if (!d)
		map_error(prefix, gen, items, ni, perr, err, errlen);
	free(text);
	free(items);
	return d;
}

char *sd_text(const char *prefix, const char *gen, const struct sd_record *recs, size_t n,
              size_t *len, char *err, size_t errlen)
{
	struct sd_item *items = NULL;
	size_t ni = 0;
	char *text = assemble(prefix, gen, recs, n, len, &items, &ni, err, errlen);

	free(items);
	return text;
}

/* ---------------------------------------------------------------------------
 * Text -> records
 */

struct rec_buf {
	struct { size_t koff, klen, voff, vlen; } *r;
	size_t n, room;
	char *s;
	size_t slen, sroom;
};

static int sb_add(struct rec_buf *b, const char *s, size_t len, size_t *off)
{
	while (b->slen + len + 1 > b->sroom) {
		size_t nroom = b->sroom ? b->sroom * 2 : 4096;
		char *ns = realloc(b->s, nroom);

		if (!ns)
			return -1;
		b->s = ns;
		b->sroom = nroom;
	}
	*off = b->slen;
	memcpy(b->s + b->slen, s, len);
	b->s[b->slen + len] = '\0';
	b->slen += len + 1;
	return 0;
}

/* Adds key PREFIX/g/GEN/<k1><k2> with value v. */
static int rb_add(struct rec_buf *b, const char *prefix, const char *gen, const char *k1,
                  const char *k2, size_t k2len, const char *v, size_t vlen)
{
	char key[SD_PREFIX_MAX + 64 + 128];
	int kl = snprintf(key, sizeof(key), "%s/g/%s/%s%.*s", prefix, gen, k1, (int)k2len, k2);

	if (kl < 0 || (size_t)kl >= sizeof(key))
		return -1;
	if (b->n == b->room) {
		size_t nroom = b->room ? b->room * 2 : 64;
		void *nr = realloc(b->r, nroom * sizeof(*b->r));

		if (!nr)
			return -1;
		b->r = nr;
		b->room = nroom;
	}
	if (sb_add(b, key, (size_t)kl, &b->r[b->n].koff) == -1 || sb_add(b, v, vlen, &b->r[b->n].voff) == -1)
		return -1;
	b->r[b->n].klen = (size_t)kl;
	b->r[b->n].vlen = vlen;
	b->n++;
	return 0;
}

int sd_records_from_text(const char *prefix, const char *gen, const char *text, size_t len,
                         const char *filename, struct sd_record **out, size_t *n,
                         char *err, size_t errlen)
{
	struct rec_buf b = { 0 };
	struct router_dir *d;
	struct sd_record *recs;
	char *line = NULL, *block;
	size_t pos = 0, room = 0;
	unsigned ndc = 0;
	int ret = -1;

	*out = NULL;
	*n = 0;
	if (errlen)
		err[0] = '\0';
	if (!prefix || !*prefix || strlen(prefix) >= SD_PREFIX_MAX || !gen || !valid_gen(gen, strlen(gen))) {
		snprintf(err, errlen, "%s: bad key prefix or generation", filename ? filename : "<seed>");
		return -1;
	}
	/* The text parser is the judge: a file it rejects is never split. */
	d = router_dir_parse_flags(text, len, filename, ROUTER_LOAD_NO_RINGS, err, errlen);
	if (!d)
		return -1;
	router_dir_release(&d);

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos, o = 0;
		const char *kw, *name;
		size_t kwl, namel;
		char pos4[8];

		if (ll + 1 > room) {
			char *nline = realloc(line, ll + 1);

			if (!nline)
				goto oom;
			line = nline;
			room = ll + 1;
		}
		/* Normalise: comment cut, words joined by one space. */
		for (size_t i = 0; i < ll && text[pos + i] != '#'; i++) {
			char c = text[pos + i];

			if (c && strchr(" \t\r\v\f", c)) {
				if (o && line[o - 1] != ' ')
					line[o++] = ' ';
			} else
				line[o++] = c;
		}
		while (o && line[o - 1] == ' ')
			o--;
		pos += ll + 1;
		if (!o)
			continue;
		value_word(line, o, 0, &kw, &kwl);
		if (!value_word(line, o, 1, &name, &namel))
			name = "", namel = 0;
		if (setting_index(kw, kwl) >= 0) {
			if (rb_add(&b, prefix, gen, settings[setting_index(kw, kwl)], "", 0, line, o) == -1)
				goto oom;
		} else if (kwl == 2 && !memcmp(kw, "dc", 2)) {
			snprintf(pos4, sizeof(pos4), "%04u", ++ndc);
			if (rb_add(&b, prefix, gen, "dc/", pos4, 4, line, o) == -1)
				goto oom;
		} else if (kwl == 3 && !memcmp(kw, "hub", 3)) {
			if (rb_add(&b, prefix, gen, "hub/", name, namel, line, o) == -1)
				goto oom;
		} else if (kwl == 4 && !memcmp(kw, "node", 4)) {
			if (rb_add(&b, prefix, gen, "node/", name, namel, line, o) == -1)
				goto oom;
		} else if (kwl == 4 && !memcmp(kw, "pool", 4)) {
			if (rb_add(&b, prefix, gen, "pool/", name, namel, line, o) == -1)
				goto oom;
		} else if (kwl == 6 && !memcmp(kw, "server", 6)) {
			if (rb_add(&b, prefix, gen, "server/", name, namel, line, o) == -1)
				goto oom;
		} else if (kwl == 5 && !memcmp(kw, "route", 5)) {
			/* the parser accepted it: the prefix starts with '/' */
			if (rb_add(&b, prefix, gen, "route/", name + 1, namel - 1, line, o) == -1)
				goto oom;
		} else if (kwl == 7 && !memcmp(kw, "project", 7)) {
			uint8_t id[16];
			char canon[37];

			if (router_project_parse(name, namel, id) == -1)
				goto oom;              /* cannot happen: the parser accepted it */
			router_project_format(id, canon);
			if (rb_add(&b, prefix, gen, "project/", canon, 36, line, o) == -1)
				goto oom;
		} else {
			/* The parser knows a record this layout has no key for:
			 * a bug of ours, said as such rather than as "no memory". */
			snprintf(err, errlen, "%s: '%.*s' records have no etcd key (a seedgate bug; "
			         "keep this directory in a file)", filename ? filename : "<seed>", (int)kwl, kw);
			goto out;
		}
	}

	block = malloc(b.n * sizeof(*recs) + b.slen + 1);
	if (!block)
		goto oom;
	recs = (struct sd_record *)(void *)block;
	memcpy(block + b.n * sizeof(*recs), b.s ? b.s : "", b.slen);
	for (size_t i = 0; i < b.n; i++) {
		char *s = block + b.n * sizeof(*recs);

		recs[i].key = s + b.r[i].koff;
		recs[i].key_len = b.r[i].klen;
		recs[i].value = s + b.r[i].voff;
		recs[i].value_len = b.r[i].vlen;
	}
	*out = recs;
	*n = b.n;
	ret = 0;
	goto out;
oom:
	snprintf(err, errlen, "%s: out of memory splitting the directory", filename ? filename : "<seed>");
out:
	free(line);
	free(b.r);
	free(b.s);
	return ret;
}
