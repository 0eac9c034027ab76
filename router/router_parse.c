/*
 * router_parse.c — the text form of the seed directory (docs/architecture.md §2.1,
 * docs/seed-directory.md) into an immutable snapshot.
 *
 * Redis-style: each line is split into words, the first word picks a handler
 * from a keyword table, and any error stops the parse with "file:line:
 * message": a directory is accepted whole or not at all. Names are resolved
 * after the last line, so dc, node and project lines may come in any order;
 * errors found then still carry the line they belong to.
 *
 * Strings are kept in one arena as offsets while parsing (the arena moves as
 * it grows) and turned into pointers once, when the snapshot is assembled.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "router_int.h"

#define MAX_WORDS 48

/* Check settings of a line with strings as arena offsets (0 = unset). */
struct pcheck {
	enum router_check_kind kind;
	size_t path, host, method, sni;
	unsigned status_min, status_max, interval_ms, timeout_ms, rise, fall, jitter_pct;
};

struct ptarget {
	size_t name, host, addr, dcname, pool;
	unsigned line, weight;
	uint16_t port;
	enum router_kind kind;
	bool drain;
	struct pcheck check;
};

struct ppin {
	uint8_t id[16];
	unsigned line;
	uint32_t first, count;         /* into pin_names */
};

struct ppool {
	size_t name;
	unsigned line;
};

struct proute {
	size_t prefix, pool;
	unsigned line;
};

/* Most pools a directory may declare (each has a backend in every dc). */
#define ROUTER_MAX_POOLS 1024

struct parser {
	const char *file;
	unsigned line;
	char *err;
	size_t errlen;
	char *arena;
	size_t arena_len, arena_room;
	struct ptarget *t;
	size_t nt, t_room;
	size_t dcs[ROUTER_MAX_DCS];
	unsigned dc_line[ROUTER_MAX_DCS];
	unsigned ndcs;
	struct ppin *pins;
	size_t npins, pins_room;
	size_t *pin_names;             /* arena offsets */
	size_t npin_names, pin_names_room;
	unsigned replicas, replicas_line;
	unsigned ring_scale, ring_scale_line;
	unsigned node_shards, node_shards_line;
	struct ppool *pools;
	size_t npools, pools_room;
	struct proute *routes;
	size_t nroutes, routes_room;
	struct pcheck defaults;
	unsigned defaults_line;
	unsigned flags;                /* ROUTER_LOAD_* */
};

/* Formats "file:line: message" into the caller's buffer; returns -1 so a
 * handler can `return perr(p, ...)`. */
static int perr(struct parser *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int perr(struct parser *p, const char *fmt, ...)
{
	static const char hex[] = "0123456789abcdef";
	char msg[256], safe[256];
	size_t o = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* The message quotes words of the file, which may hold any byte: the
	 * formats are printable ASCII, so escaping the whole message (every
	 * byte that is not printable ASCII as \xNN, as libhc's hc_escape_log()
	 * does) escapes just what came from the input, and the error prints as
	 * one harmless line. */
	for (size_t i = 0; msg[i]; i++) {
		unsigned char c = (unsigned char)msg[i];
		size_t n = (c >= 0x20 && c < 0x7f) ? 1 : 4;

		if (o + n >= sizeof(safe))
			break;
		if (n == 1) {
			safe[o++] = (char)c;
		} else {
			safe[o++] = '\\';
			safe[o++] = 'x';
			safe[o++] = hex[c >> 4];
			safe[o++] = hex[c & 15];
		}
	}
	safe[o] = '\0';
	snprintf(p->err, p->errlen, "%s:%u: %s", p->file, p->line, safe);
	return -1;
}

/* Grows *arr (of elem bytes) so that one more element fits. */
static int grow(void **arr, size_t *room, size_t used, size_t elem)
{
	size_t nroom;
	void *n;

	if (used < *room)
		return 0;
	nroom = *room ? *room * 2 : 64;
	n = realloc(*arr, nroom * elem);
	if (!n)
		return -1;
	*arr = n;
	*room = nroom;
	return 0;
}

/* Copies len bytes + NUL into the arena; returns the offset, 0 on failure
 * (offset 0 is the arena's reserved empty string, never handed out). */
static size_t arena_add(struct parser *p, const char *s, size_t len)
{
	size_t off;

	while (p->arena_len + len + 1 > p->arena_room) {
		size_t nroom = p->arena_room ? p->arena_room * 2 : 4096;
		char *n = realloc(p->arena, nroom);

		if (!n)
			return 0;
		p->arena = n;
		p->arena_room = nroom;
	}
	if (p->arena_len == 0)
		p->arena[p->arena_len++] = '\0';
	off = p->arena_len;
	memcpy(p->arena + off, s, len);
	p->arena[off + len] = '\0';
	p->arena_len += len + 1;
	return off;
}

/* Adds a string to the arena or reports out-of-memory at this line. */
static int pstr(struct parser *p, const char *s, size_t *off)
{
	*off = arena_add(p, s, strlen(s));
	return *off ? 0 : perr(p, "out of memory");
}

/* [A-Za-z0-9_.-]{1,32} */
static bool valid_name(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++) {
		char c = s[n];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return n >= 1 && n <= ROUTER_NAME_MAX;
}

/* Strictly positive decimal up to max, no sign, no leading junk. */
static bool parse_uint(const char *s, unsigned max, unsigned *out)
{
	unsigned long v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned)(*s - '0');
		if (v > max)
			return false;
	}
	*out = (unsigned)v;
	return true;
}

/* RFC 1123 host name: dot-separated labels of [A-Za-z0-9-], no label
 * starting or ending with '-', at most 253 bytes. All-numeric dotted strings
 * are not host names (a mistyped IPv4 address must not pass as one). */
bool router_hostname_valid(const char *s, size_t len)
{
	size_t label = 0;
	bool alpha = false;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (!(c >= '0' && c <= '9'))
			alpha = true;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[len - 1] != '-' && alpha;
}

/* "ip:port", "[v6]:port" or "hostname:port" into the target. */
static int parse_addr(struct parser *p, const char *a, struct ptarget *t)
{
	const char *host, *colon;
	size_t hlen;
	unsigned port;
	char tmp[256];

	if (a[0] == '[') {
		const char *close = strchr(a, ']');
		struct in6_addr a6;

		if (!close || close[1] != ':')
			return perr(p, "bad address '%s' (expected [v6]:port)", a);
		host = a + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
		if (hlen >= sizeof(tmp))
			return perr(p, "bad address '%s'", a);
		memcpy(tmp, host, hlen);
		tmp[hlen] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return perr(p, "bad IPv6 address '%s'", tmp);
	} else {
		struct in_addr a4;

		colon = strrchr(a, ':');
		if (!colon || colon == a)
			return perr(p, "bad address '%s' (expected host:port)", a);
		if (memchr(a, ':', (size_t)(colon - a)))
			return perr(p, "bad address '%s' (write IPv6 as [addr]:port)", a);
		host = a;
		hlen = (size_t)(colon - a);
		if (hlen >= sizeof(tmp))
			return perr(p, "bad address '%s'", a);
		memcpy(tmp, host, hlen);
		tmp[hlen] = '\0';
		if (inet_pton(AF_INET, tmp, &a4) != 1 && !router_hostname_valid(tmp, hlen))
			return perr(p, "bad host '%s' (IPv4 address or host name)", tmp);
	}
	if (!parse_uint(colon + 1, 65535, &port) || port == 0)
		return perr(p, "bad port '%s' (1-65535)", colon + 1);
	t->port = (uint16_t)port;
	if (!(t->host = arena_add(p, tmp, hlen)) || pstr(p, a, &t->addr) == -1)
		return perr(p, "out of memory");
	return 0;
}

/* "500ms", "2s", "1m", "1h" or a bare number of milliseconds; 1 ms to 1 hour
 * (1h included). */
static bool parse_duration(const char *s, unsigned *ms)
{
	char num[16];
	size_t n = strspn(s, "0123456789");
	unsigned v, mult;

	if (n == 0 || n >= sizeof(num))
		return false;
	memcpy(num, s, n);
	num[n] = '\0';
	if (!parse_uint(num, 3600000, &v) || v == 0)
		return false;
	if (!strcmp(s + n, "") || !strcmp(s + n, "ms"))
		mult = 1;
	else if (!strcmp(s + n, "s"))
		mult = 1000;
	else if (!strcmp(s + n, "m"))
		mult = 60000;
	else if (!strcmp(s + n, "h"))
		mult = 3600000;        /* "up to 1h" (docs/seed-directory.md): 1h itself */
	else
		return false;
	if ((unsigned long)v * mult > 3600000ul)
		return false;
	*ms = v * mult;
	return true;
}

/* One key=value of the check family; returns 1 when key is not a check key,
 * 0 when applied, -1 on error. */
static int parse_check_kv(struct parser *p, const char *key, const char *val, struct pcheck *c)
{
	if (!strcmp(key, "check")) {
		if (!strcmp(val, "tcp"))
			c->kind = ROUTER_CHECK_TCP;
		else if (!strcmp(val, "http"))
			c->kind = ROUTER_CHECK_HTTP;
		else if (!strcmp(val, "https"))
			c->kind = ROUTER_CHECK_HTTPS;
		else if (!strcmp(val, "none"))
			c->kind = ROUTER_CHECK_NONE;
		else
			return perr(p, "bad check '%s' (tcp, http, https or none)", val);
	} else if (!strcmp(key, "check-path")) {
		if (val[0] != '/')
			return perr(p, "bad check-path '%s' (must start with /)", val);
		return pstr(p, val, &c->path);
	} else if (!strcmp(key, "check-host") || !strcmp(key, "check-sni")) {
		if (!router_hostname_valid(val, strlen(val))) {
			struct in_addr a4;

			if (inet_pton(AF_INET, val, &a4) != 1)
				return perr(p, "bad %s '%s' (host name)", key, val);
		}
		return pstr(p, val, key[6] == 'h' ? &c->host : &c->sni);
	} else if (!strcmp(key, "check-method")) {
		size_t n = strspn(val, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");

		if (n == 0 || n > 16 || val[n])
			return perr(p, "bad check-method '%s' (upper-case token like GET)", val);
		return pstr(p, val, &c->method);
	} else if (!strcmp(key, "check-status")) {
		const char *dash = strchr(val, '-');
		char lo[8];
		unsigned a, b;

		if (dash) {
			size_t n = (size_t)(dash - val);

			if (n == 0 || n >= sizeof(lo))
				return perr(p, "bad check-status '%s' (e.g. 200-399)", val);
			memcpy(lo, val, n);
			lo[n] = '\0';
			if (!parse_uint(lo, 599, &a) || !parse_uint(dash + 1, 599, &b))
				return perr(p, "bad check-status '%s' (e.g. 200-399)", val);
		} else if (parse_uint(val, 599, &a)) {
			b = a;
		} else {
			return perr(p, "bad check-status '%s' (e.g. 200-399)", val);
		}
		if (a < 100 || b < a)
			return perr(p, "bad check-status '%s' (codes 100-599, low-high)", val);
		c->status_min = a;
		c->status_max = b;
	} else if (!strcmp(key, "interval") || !strcmp(key, "timeout")) {
		if (!parse_duration(val, key[0] == 'i' ? &c->interval_ms : &c->timeout_ms))
			return perr(p, "bad %s '%s' (e.g. 500ms, 2s; up to 1h)", key, val);
	} else if (!strcmp(key, "rise") || !strcmp(key, "fall")) {
		if (!parse_uint(val, 1000, key[0] == 'r' ? &c->rise : &c->fall) ||
		    (key[0] == 'r' ? c->rise : c->fall) == 0)
			return perr(p, "bad %s '%s' (1-1000)", key, val);
	} else if (!strcmp(key, "jitter")) {
		size_t n = strlen(val);
		char num[8];

		if (n < 2 || n > 4 || val[n - 1] != '%')
			return perr(p, "bad jitter '%s' (percent, e.g. 10%%)", val);
		memcpy(num, val, n - 1);
		num[n - 1] = '\0';
		if (!parse_uint(num, 100, &c->jitter_pct))
			return perr(p, "bad jitter '%s' (0%%-100%%)", val);
	} else {
		return 1;
	}
	return 0;
}

/* Splits "key=value"; rejects a key seen twice on the line. */
static int split_kv(struct parser *p, char *w, char **key, char **val, char seen[][24], unsigned *nseen)
{
	char *eq = strchr(w, '=');

	if (!eq || eq == w)
		return perr(p, "expected key=value, got '%s'", w);
	*eq = '\0';
	*key = w;
	*val = eq + 1;
	if (!**val)
		return perr(p, "empty value for '%s'", w);
	for (unsigned i = 0; i < *nseen; i++)
		if (!strcmp(seen[i], w))
			return perr(p, "'%s' given twice", w);
	if (*nseen < MAX_WORDS && strlen(w) < sizeof(seen[0]))
		strcpy(seen[(*nseen)++], w);
	return 0;
}

/* KEYWORD ARG, given at most once: a number MIN..MAX into *val, its line
 * into *line (the settings below). */
static int kw_setting(struct parser *p, char **w, unsigned n, const char *kw, const char *arg,
                      unsigned min, unsigned max, unsigned *val, unsigned *line)
{
	if (n != 2)
		return perr(p, "usage: %s %s", kw, arg);
	if (*line)
		return perr(p, "%s already set on line %u", kw, *line);
	if (!parse_uint(w[1], max, val) || *val < min)
		return perr(p, "bad %s '%s' (%u-%u)", kw, w[1], min, max);
	*line = p->line;
	return 0;
}

/* replicas N */
static int kw_replicas(struct parser *p, char **w, unsigned n)
{
	return kw_setting(p, w, n, "replicas", "N", 1, ROUTER_MAX_REPLICAS, &p->replicas, &p->replicas_line);
}

/* node-shards N: each dc's nodes spread over N HAProxy backends (router.h). */
static int kw_node_shards(struct parser *p, char **w, unsigned n)
{
	return kw_setting(p, w, n, "node-shards", "N", 1, ROUTER_MAX_NODE_SHARDS, &p->node_shards,
	                  &p->node_shards_line);
}

/* ring-scale S: 2^S ring points per unit of weight (router_int.h). Only
 * ever set here, by the operator: placement never rescales by itself. */
static int kw_ring_scale(struct parser *p, char **w, unsigned n)
{
	return kw_setting(p, w, n, "ring-scale", "S", 0, ROUTER_RING_SCALE_MAX, &p->ring_scale,
	                  &p->ring_scale_line);
}

/* dc NAME */
static int kw_dc(struct parser *p, char **w, unsigned n)
{
	if (n != 2)
		return perr(p, "usage: dc NAME");
	if (!valid_name(w[1]))
		return perr(p, "bad name '%s' ([A-Za-z0-9_.-]{1,32})", w[1]);
	for (unsigned i = 0; i < p->ndcs; i++)
		if (!strcmp(p->arena + p->dcs[i], w[1]))
			return perr(p, "duplicate dc '%s' (first on line %u)", w[1], p->dc_line[i]);
	if (p->ndcs == ROUTER_MAX_DCS)
		return perr(p, "too many datacenters (max %d)", ROUTER_MAX_DCS);
	if (pstr(p, w[1], &p->dcs[p->ndcs]) == -1)
		return -1;
	p->dc_line[p->ndcs++] = p->line;
	return 0;
}

/* hub|node NAME ADDR dc=DC [weight=N] [state=up|drain] [check keys...]
 * server NAME ADDR dc=DC pool=POOL [weight=N] [state=up|drain] [check keys...] */
static int kw_target(struct parser *p, char **w, unsigned n)
{
	struct ptarget t = { .kind = w[0][0] == 'h' ? ROUTER_HUB : w[0][0] == 'n' ? ROUTER_NODE : ROUTER_SERVER,
	                     .weight = 10 };
	char seen[MAX_WORDS][24];
	unsigned nseen = 0;

	if (n < 3)
		return perr(p, "usage: %s NAME ADDR dc=DC [weight=N] [state=up|drain] [check keys]", w[0]);
	if (!valid_name(w[1]))
		return perr(p, "bad name '%s' ([A-Za-z0-9_.-]{1,32})", w[1]);
	t.line = p->line;
	if (pstr(p, w[1], &t.name) == -1 || parse_addr(p, w[2], &t) == -1)
		return -1;
	for (unsigned i = 3; i < n; i++) {
		char *key, *val;
		int r;

		if (split_kv(p, w[i], &key, &val, seen, &nseen) == -1)
			return -1;
		if (!strcmp(key, "dc")) {
			if (pstr(p, val, &t.dcname) == -1)
				return -1;
		} else if (!strcmp(key, "pool")) {
			if (t.kind != ROUTER_SERVER)
				return perr(p, "pool= only on server lines (a %s is not a pool member; declare a "
				            "server with its address)", w[0]);
			if (pstr(p, val, &t.pool) == -1)
				return -1;
		} else if (!strcmp(key, "weight")) {
			if (!parse_uint(val, ROUTER_MAX_WEIGHT, &t.weight) || t.weight == 0)
				return perr(p, "bad weight '%s' (1-%d)", val, ROUTER_MAX_WEIGHT);
		} else if (!strcmp(key, "state")) {
			if (!strcmp(val, "drain"))
				t.drain = true;
			else if (strcmp(val, "up"))
				return perr(p, "bad state '%s' (up or drain)", val);
		} else if ((r = parse_check_kv(p, key, val, &t.check)) != 0) {
			return r == 1 ? perr(p, "unknown key '%s' on %s line", key, w[0]) : -1;
		}
	}
	if (!t.dcname)
		return perr(p, "%s '%s' has no dc=", w[0], w[1]);
	if (t.kind == ROUTER_SERVER && !t.pool)
		return perr(p, "server '%s' has no pool=", w[1]);
	if (grow((void **)&p->t, &p->t_room, p->nt, sizeof(*p->t)) == -1)
		return perr(p, "out of memory");
	p->t[p->nt++] = t;
	return 0;
}

/* project UUID NODE [NODE...] */
static int kw_project(struct parser *p, char **w, unsigned n)
{
	struct ppin pin;

	if (n < 3)
		return perr(p, "usage: project UUID NODE [NODE...]");
	if (router_project_parse(w[1], strlen(w[1]), pin.id) == -1)
		return perr(p, "bad project id '%s' (8-4-4-4-12 hex digits)", w[1]);
	if (n - 2 > ROUTER_MAX_PIN)
		return perr(p, "too many nodes in pin (max %d)", ROUTER_MAX_PIN);
	pin.line = p->line;
	pin.first = (uint32_t)p->npin_names;
	pin.count = n - 2;
	for (unsigned i = 2; i < n; i++) {
		if (!valid_name(w[i]))
			return perr(p, "bad name '%s' ([A-Za-z0-9_.-]{1,32})", w[i]);
		for (unsigned j = 2; j < i; j++)
			if (!strcmp(w[i], w[j]))
				return perr(p, "node '%s' named twice in pin", w[i]);
		if (grow((void **)&p->pin_names, &p->pin_names_room, p->npin_names, sizeof(size_t)) == -1 ||
		    pstr(p, w[i], &p->pin_names[p->npin_names]) == -1)
			return perr(p, "out of memory");
		p->npin_names++;
	}
	if (grow((void **)&p->pins, &p->pins_room, p->npins, sizeof(*p->pins)) == -1)
		return perr(p, "out of memory");
	p->pins[p->npins++] = pin;
	return 0;
}

/* pool NAME */
static int kw_pool(struct parser *p, char **w, unsigned n)
{
	struct ppool pl = { .line = p->line };

	if (n != 2)
		return perr(p, "usage: pool NAME");
	if (!valid_name(w[1]))
		return perr(p, "bad name '%s' ([A-Za-z0-9_.-]{1,32})", w[1]);
	for (size_t i = 0; i < p->npools; i++)
		if (!strcmp(p->arena + p->pools[i].name, w[1]))
			return perr(p, "duplicate pool '%s' (first on line %u)", w[1], p->pools[i].line);
	if (p->npools == ROUTER_MAX_POOLS)
		return perr(p, "too many pools (max %d)", ROUTER_MAX_POOLS);
	if (pstr(p, w[1], &pl.name) == -1)
		return -1;
	if (grow((void **)&p->pools, &p->pools_room, p->npools, sizeof(*p->pools)) == -1)
		return perr(p, "out of memory");
	p->pools[p->npools++] = pl;
	return 0;
}

/* Whether a path segment could begin a project id: hex digits, and '-'
 * where the 8-4-4-4-12 form has one, at most 36 characters. Such a
 * segment is refused as a route's first segment: a route must never be a
 * way a project path could be read. */
static bool uuid_start(const char *s, size_t n)
{
	if (n > 36)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return true;
}

/* A route prefix: '/' then 1 to ROUTER_ROUTE_DEPTH_MAX segments of
 * [A-Za-z0-9_.~-] separated by single '/', no "." or ".." segment, no
 * trailing '/', at most ROUTER_ROUTE_LEN_MAX bytes; its first segment must
 * not start like a project id. */
static int check_prefix(struct parser *p, const char *s)
{
	size_t len = strlen(s), seg = 0;
	unsigned segs = 0;

	if (s[0] != '/')
		return perr(p, "bad route prefix '%.64s' (must start with /)", s);
	if (len == 1)
		return perr(p, "route prefix '/' would take project paths (/<uuid>...); "
		            "name a first segment, e.g. /download");
	if (len > ROUTER_ROUTE_LEN_MAX)
		return perr(p, "route prefix '%.64s...' longer than %d bytes", s, ROUTER_ROUTE_LEN_MAX);
	for (size_t i = 1; i <= len; i++) {
		char c = s[i];

		if (c == '/' || c == '\0') {
			if (seg == 0)
				return perr(p, "bad route prefix '%s' (empty segment or trailing /)", s);
			if ((seg == 1 && s[i - 1] == '.') || (seg == 2 && s[i - 1] == '.' && s[i - 2] == '.'))
				return perr(p, "bad route prefix '%s' (. or .. segment)", s);
			if (segs == 0 && uuid_start(s + 1, seg))
				return perr(p, "route prefix '%s' could match a project path: its first segment "
				            "'%.*s' starts like a project id (hex digits); choose another name",
				            s, (int)seg, s + 1);
			if (++segs > ROUTER_ROUTE_DEPTH_MAX)
				return perr(p, "route prefix '%s' has more than %d segments", s, ROUTER_ROUTE_DEPTH_MAX);
			seg = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '~' || c == '-'))
			return perr(p, "bad route prefix '%s' (segments of [A-Za-z0-9_.~-] separated by /)", s);
		seg++;
	}
	return 0;
}

/* route PREFIX POOL */
static int kw_route(struct parser *p, char **w, unsigned n)
{
	struct proute r = { .line = p->line };

	if (n != 3)
		return perr(p, "usage: route PREFIX POOL");
	if (check_prefix(p, w[1]) == -1)
		return -1;
	if (!valid_name(w[2]))
		return perr(p, "bad pool name '%s' ([A-Za-z0-9_.-]{1,32})", w[2]);
	if (pstr(p, w[1], &r.prefix) == -1 || pstr(p, w[2], &r.pool) == -1)
		return -1;
	if (grow((void **)&p->routes, &p->routes_room, p->nroutes, sizeof(*p->routes)) == -1)
		return perr(p, "out of memory");
	p->routes[p->nroutes++] = r;
	return 0;
}

/* check-defaults KEY=VALUE... */
static int kw_check_defaults(struct parser *p, char **w, unsigned n)
{
	char seen[MAX_WORDS][24];
	unsigned nseen = 0;

	if (p->defaults_line)
		return perr(p, "check-defaults already given on line %u", p->defaults_line);
	p->defaults_line = p->line;
	for (unsigned i = 1; i < n; i++) {
		char *key, *val;
		int r;

		if (split_kv(p, w[i], &key, &val, seen, &nseen) == -1)
			return -1;
		if ((r = parse_check_kv(p, key, val, &p->defaults)) != 0)
			return r == 1 ? perr(p, "unknown key '%s' on check-defaults line", key) : -1;
	}
	return 0;
}

static const struct {
	const char *kw;
	int (*fn)(struct parser *p, char **w, unsigned n);
} keywords[] = {
	{ "replicas",       kw_replicas },
	{ "ring-scale",     kw_ring_scale },
	{ "node-shards",    kw_node_shards },
	{ "dc",             kw_dc },
	{ "hub",            kw_target },
	{ "node",           kw_target },
	{ "server",         kw_target },
	{ "pool",           kw_pool },
	{ "route",          kw_route },
	{ "project",        kw_project },
	{ "check-defaults", kw_check_defaults },
};

/* One line (no newline, NUL-terminated, writable): strips the comment, splits
 * the words and runs the keyword. */
static int parse_line(struct parser *p, char *s)
{
	char *w[MAX_WORDS];
	unsigned n = 0;
	char *hash = strchr(s, '#'), *save = NULL;

	if (hash)
		*hash = '\0';
	for (char *tok = strtok_r(s, " \t\r\v\f", &save); tok;
	     tok = strtok_r(NULL, " \t\r\v\f", &save)) {
		if (n == MAX_WORDS)
			return perr(p, "too many words on one line (max %d)", MAX_WORDS);
		w[n++] = tok;
	}
	if (n == 0)
		return 0;
	for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (!strcmp(w[0], keywords[i].kw))
			return keywords[i].fn(p, w, n);
	return perr(p, "unknown keyword '%.40s'", w[0]);
}

/* Smallest power of two >= 2n (>= 16): load factor <= 1/2. */
static uint32_t table_size(size_t n)
{
	uint32_t s = 16;

	while (s < 2 * n)
		s <<= 1;
	return s;
}

static const char *opt_str(const char *arena, size_t off)
{
	return off ? arena + off : NULL;
}

/* Target check = its own keys over the check-defaults line. */
static void merge_check(struct router_check *out, const struct pcheck *t, const struct pcheck *def,
                        const char *arena)
{
#define PICK(f) (t->f ? t->f : def->f)
	out->kind = PICK(kind);
	out->path = opt_str(arena, PICK(path));
	out->host = opt_str(arena, PICK(host));
	out->method = opt_str(arena, PICK(method));
	out->sni = opt_str(arena, PICK(sni));
	if (t->status_min) {
		out->status_min = t->status_min;
		out->status_max = t->status_max;
	} else {
		out->status_min = def->status_min;
		out->status_max = def->status_max;
	}
	out->interval_ms = PICK(interval_ms);
	out->timeout_ms = PICK(timeout_ms);
	out->rise = PICK(rise);
	out->fall = PICK(fall);
	out->jitter_pct = PICK(jitter_pct);
#undef PICK
}

/* Sets each dc's ring points (weights x 2^ring-scale) and refuses a
 * directory whose rings would need more than ROUTER_RING_POINTS_MAX in all,
 * naming the biggest dc and the ring-scale that would fit. Arithmetic only,
 * before any ring exists, so it holds for ROUTER_LOAD_NO_RINGS too
 * (seedctl check) and a bad file never costs the memory it asks for. */
static int check_ring_points(struct parser *p, struct router_dir *d)
{
	uint64_t wsum = 0, all = 0;
	unsigned big = 0;
	int fit = d->ring_scale;

	for (unsigned t = 0; t < d->ntargets; t++)
		if (d->targets[t].kind == ROUTER_NODE) {
			d->dcs[d->targets[t].dc].points += router_ring_points(d->targets[t].weight, d->ring_scale);
			wsum += d->targets[t].weight;
		}
	for (unsigned i = 0; i < d->ndcs; i++) {
		all += d->dcs[i].points;
		if (d->dcs[i].points > d->dcs[big].points)
			big = i;
	}
	if (all <= ROUTER_RING_POINTS_MAX)
		return 0;
	while (fit >= 0 && (wsum << fit) > ROUTER_RING_POINTS_MAX)
		fit--;
	p->line = p->dc_line[big];
	if (fit < 0)
		return perr(p, "dc '%s' needs %llu ring points (the directory %llu in all), over the budget of %llu "
		            "(2^%d) even at `ring-scale 0`: lower weights", d->dcs[big].name,
		            (unsigned long long)d->dcs[big].points, (unsigned long long)all,
		            (unsigned long long)ROUTER_RING_POINTS_MAX, __builtin_ctzll(ROUTER_RING_POINTS_MAX));
	return perr(p, "dc '%s' needs %llu ring points (the directory %llu in all), over the budget of %llu "
	            "(2^%d): lower weights or set `ring-scale N`; N=%d would fit", d->dcs[big].name,
	            (unsigned long long)d->dcs[big].points, (unsigned long long)all,
	            (unsigned long long)ROUTER_RING_POINTS_MAX, __builtin_ctzll(ROUTER_RING_POINTS_MAX), fit);
}

/* The index of the pool named name (an arena string), or -1. */
static int ppool_find(const struct parser *p, const char *arena, const char *name)
{
	for (size_t i = 0; i < p->npools; i++)
		if (!strcmp(arena + p->pools[i].name, name))
			return (int)i;
	return -1;
}

static const char *const kind_names[] = { "hub", "node", "server" };

/* Pools: names unique across kinds, servers resolved to their pool, each
 * pool's members by dc, no pool without a server. pb_off: the arena
 * offsets of the backend names, npools x ndcs. */
static int build_pools(struct parser *p, struct router_dir *d, const size_t *pb_off)
{
	size_t np = p->npools, nd = d->ndcs, nm = 0;
	uint32_t *count;

	d->npools = (unsigned)np;
	d->pools = calloc(np + 1, sizeof(*d->pools));
	d->pool_backends = calloc(np * nd + 1, sizeof(*d->pool_backends));
	d->pool_first = calloc(np * (nd + 1) + 1, sizeof(*d->pool_first));
	count = calloc(np * nd + 1, sizeof(*count));
	if (!d->pools || !d->pool_backends || !d->pool_first || !count) {
		free(count);
		return perr(p, "out of memory");
	}
	d->memory += np * (sizeof(*d->pools) + nd * sizeof(*d->pool_backends) + (nd + 1) * sizeof(uint32_t));
	for (size_t i = 0; i < np; i++) {
		const char *name = d->strings + p->pools[i].name;
		int t = router_dir_target_find(d, name);

		p->line = p->pools[i].line;
		if (t >= 0) {
			free(count);
			return perr(p, "pool '%s' has the name of a %s (line %u): names are unique across kinds",
			            name, kind_names[d->targets[t].kind], p->t[t].line);
		}
		d->pools[i].name = name;
		d->pools[i].backend = d->pool_backends + i * nd;
		d->pools[i].first = d->pool_first + i * (nd + 1);
		for (size_t k = 0; k < nd; k++)
			d->pool_backends[i * nd + k] = d->strings + pb_off[i * nd + k];
	}
	for (unsigned t = 0; t < d->ntargets; t++) {
		struct router_target *rt = &d->targets[t];

		rt->pool = -1;
		if (rt->kind != ROUTER_SERVER)
			continue;
		p->line = p->t[t].line;
		rt->pool = ppool_find(p, d->strings, d->strings + p->t[t].pool);
		if (rt->pool < 0) {
			free(count);
			return perr(p, "server '%s' in unknown pool '%s' (declare it: pool NAME)", rt->name,
			            d->strings + p->t[t].pool);
		}
		count[(size_t)rt->pool * nd + rt->dc]++;
		nm++;
	}
	d->pool_members = malloc((nm ? nm : 1) * sizeof(uint32_t));
	if (!d->pool_members) {
		free(count);
		return perr(p, "out of memory");
	}
	d->memory += nm * sizeof(uint32_t);
	nm = 0;
	for (size_t i = 0; i < np; i++) {
		uint32_t *first = d->pool_first + i * (nd + 1);

		for (size_t k = 0; k < nd; k++) {
			first[k] = (uint32_t)nm;
			nm += count[i * nd + k];
			count[i * nd + k] = first[k];        /* now the next free slot */
		}
		first[nd] = (uint32_t)nm;
		if (first[nd] == first[0]) {
			p->line = p->pools[i].line;
			free(count);
			return perr(p, "pool '%s' has no server (add: server NAME ADDR dc=DC pool=%s)",
			            d->pools[i].name, d->pools[i].name);
		}
	}
	for (unsigned t = 0; t < d->ntargets; t++)
		if (d->targets[t].kind == ROUTER_SERVER)
			d->pool_members[count[(size_t)d->targets[t].pool * nd + d->targets[t].dc]++] = t;
	free(count);
	return 0;
}

/* The slot of key (len bytes, hash h) in the route table: its own, or the
 * empty one where it belongs. */
static struct router_route_slot *route_slot(struct router_dir *d, const char *key, size_t len, uint64_t h)
{
	uint32_t i = (uint32_t)h & d->route_mask;

	while (d->route_slots[i].key && (d->route_slots[i].hash != h || d->route_slots[i].len != len ||
	                                 memcmp(d->route_slots[i].key, key, len)))
		i = (i + 1) & d->route_mask;
	return &d->route_slots[i];
}

/* Routes: pools resolved, no prefix twice, the hash trie (router_int.h). */
static int build_routes(struct parser *p, struct router_dir *d)
{
	size_t nslots = 0;

	d->nroutes = (unsigned)p->nroutes;
	for (size_t i = 0; i < p->nroutes; i++) {
		const char *s = d->strings + p->routes[i].prefix;

		for (size_t k = 1; s[k - 1]; k++)
			nslots += s[k] == '/' || s[k] == '\0';
	}
	d->route_mask = table_size(nslots) - 1;
	d->routes = calloc(p->nroutes ? p->nroutes : 1, sizeof(*d->routes));
	d->route_slots = calloc((size_t)d->route_mask + 1, sizeof(*d->route_slots));
	if (!d->routes || !d->route_slots)
		return perr(p, "out of memory");
	d->memory += p->nroutes * sizeof(*d->routes) + ((size_t)d->route_mask + 1) * sizeof(*d->route_slots);
	for (size_t i = 0; i < p->nroutes; i++) {
		const char *s = d->strings + p->routes[i].prefix, *pool = d->strings + p->routes[i].pool;
		size_t len = strlen(s);
		int pi = ppool_find(p, d->strings, pool);
		struct router_route_slot *sl;

		p->line = p->routes[i].line;
		if (pi < 0)
			return perr(p, "route '%s' to unknown pool '%s' (declare it: pool NAME)", s, pool);
		d->routes[i].prefix = s;
		d->routes[i].pool = pi;
		{
			size_t seg = strcspn(s + 1, "/");

			d->route_first_byte[(unsigned char)s[1] >> 6] |= UINT64_C(1) << ((unsigned char)s[1] & 63);
			d->route_first_len |= UINT64_C(1) << (seg < 63 ? seg : 63);
		}
		/* the shorter prefixes on the way (whole segments) */
		for (size_t k = 1; k < len; k++) {
			if (s[k] != '/')
				continue;
			sl = route_slot(d, s, k, router_name_hash(s, k));
			if (!sl->key) {
				sl->key = s;
				sl->len = (uint32_t)k;
				sl->hash = router_name_hash(s, k);
				sl->pool = -1;
			}
			sl->deeper = 1;
		}
		sl = route_slot(d, s, len, router_name_hash(s, len));
		if (sl->key && sl->pool >= 0)
			return perr(p, "duplicate route '%s' (first on line %u)", s, p->routes[sl->route].line);
		if (!sl->key) {
			sl->key = s;
			sl->len = (uint32_t)len;
			sl->hash = router_name_hash(s, len);
		}
		sl->pool = pi;
		sl->route = (uint32_t)i;
	}
	return 0;
}

/* Turns the parsed lines into a snapshot: resolves datacenters, catches
 * duplicate names, resolves pins, builds the tables and the rings. */
static struct router_dir *assemble(struct parser *p)
{
	struct router_dir *d = calloc(1, sizeof(*d));
	size_t hub_off[ROUTER_MAX_DCS];
	size_t *pb_off = NULL, *nb_off = NULL;
	unsigned *tdc = NULL;

	if (!d)
		goto out_oom;
	atomic_init(&d->refs, 1);
	d->replicas = p->replicas_line ? p->replicas : 2;
	d->ring_scale = p->ring_scale_line ? (int)p->ring_scale : ROUTER_RING_SCALE_DEFAULT;
	d->node_shards = p->node_shards_line ? p->node_shards : 1;
	p->line = p->ndcs ? p->dc_line[0] : 1;
	if (p->ndcs == 0) {
		p->line = 1;
		perr(p, "no datacenter declared (add a 'dc NAME' line)");
		goto out_free_dir;
	}
	/* Backend names go in the arena before it is frozen. */
	nb_off = malloc((size_t)p->ndcs * d->node_shards * sizeof(*nb_off));
	if (!nb_off)
		goto out_oom;
	for (unsigned i = 0; i < p->ndcs; i++) {
		char buf[64];

		snprintf(buf, sizeof(buf), "hubs_%s", p->arena + p->dcs[i]);
		hub_off[i] = arena_add(p, buf, strlen(buf));
		if (!hub_off[i])
			goto out_oom;
		for (unsigned k = 0; k < d->node_shards; k++) {
			if (d->node_shards == 1)
				snprintf(buf, sizeof(buf), "nodes_%s", p->arena + p->dcs[i]);
			else
				snprintf(buf, sizeof(buf), "nodes_%s_%u", p->arena + p->dcs[i], k);
			if (!(nb_off[(size_t)i * d->node_shards + k] = arena_add(p, buf, strlen(buf))))
				goto out_oom;
		}
	}
	pb_off = malloc((p->npools * p->ndcs + 1) * sizeof(*pb_off));
	if (!pb_off)
		goto out_oom;
	for (size_t i = 0; i < p->npools; i++)
		for (unsigned k = 0; k < p->ndcs; k++) {
			char buf[96];

			snprintf(buf, sizeof(buf), "pool_%s_%s", p->arena + p->pools[i].name, p->arena + p->dcs[k]);
			if (!(pb_off[i * p->ndcs + k] = arena_add(p, buf, strlen(buf))))
				goto out_oom;
		}
	d->strings = p->arena;
	d->strings_len = p->arena_room;
	p->arena = NULL;
	d->memory = sizeof(*d) + d->strings_len;

	d->ndcs = p->ndcs;
	d->dcs = calloc(p->ndcs, sizeof(*d->dcs));
	d->ntargets = (unsigned)p->nt;
	d->targets = calloc(p->nt ? p->nt : 1, sizeof(*d->targets));
	d->hot = calloc(p->nt ? p->nt : 1, sizeof(*d->hot));
	tdc = calloc(p->nt ? p->nt : 1, sizeof(*tdc));
	if (!d->dcs || !d->targets || !d->hot || !tdc)
		goto out_oom;
	d->memory += p->ndcs * sizeof(*d->dcs) + p->nt * (sizeof(*d->targets) + sizeof(*d->hot));
	d->node_backends = malloc((size_t)p->ndcs * d->node_shards * sizeof(*d->node_backends));
	if (!d->node_backends)
		goto out_oom;
	d->memory += (size_t)p->ndcs * d->node_shards * sizeof(*d->node_backends);
	for (unsigned i = 0; i < p->ndcs; i++) {
		d->dcs[i].name = d->strings + p->dcs[i];
		d->dcs[i].hub_backend = d->strings + hub_off[i];
		d->dcs[i].node_backends = d->node_backends + (size_t)i * d->node_shards;
		for (unsigned k = 0; k < d->node_shards; k++)
			d->dcs[i].node_backends[k] = d->strings + nb_off[(size_t)i * d->node_shards + k];
	}

	/* Targets: datacenter and name table. */
	d->names_mask = table_size(p->nt) - 1;
	d->names = malloc((size_t)(d->names_mask + 1) * sizeof(uint32_t));
	if (!d->names)
		goto out_oom;
	memset(d->names, 0xff, (size_t)(d->names_mask + 1) * sizeof(uint32_t));
	d->memory += (size_t)(d->names_mask + 1) * sizeof(uint32_t);
	for (size_t i = 0; i < p->nt; i++) {
		const struct ptarget *pt = &p->t[i];
		struct router_target *t = &d->targets[i];
		const char *dcname = d->strings + pt->dcname;
		int dc = router_dir_dc_find(d, dcname);
		uint32_t slot;

		p->line = pt->line;
		if (dc < 0) {
			perr(p, "unknown datacenter '%s'", dcname);
			goto out_free_dir;
		}
		t->name = d->strings + pt->name;
		t->kind = pt->kind;
		t->dc = (unsigned)dc;
		t->weight = pt->weight;
		t->drain = pt->drain;
		t->host = d->strings + pt->host;
		t->port = pt->port;
		t->addr = d->strings + pt->addr;
		merge_check(&t->check, &pt->check, &p->defaults, d->strings);
		/* Stable: a node's backend depends on its name and N alone, so
		 * every daemon and `seedctl haproxy` agree, and a node added at
		 * run time lands in a backend that already exists. */
		t->shard = t->kind == ROUTER_NODE && d->node_shards > 1 ?
		           (unsigned)(XXH3_64bits(t->name, strlen(t->name)) % d->node_shards) : 0;
		d->hot[i].name = t->name;
		d->hot[i].dc = t->dc;
		d->hot[i].drain = t->drain;
		d->hot[i].shard = (uint16_t)t->shard;
		slot = (uint32_t)router_name_hash(t->name, strlen(t->name)) & d->names_mask;
		while (d->names[slot] != UINT32_MAX) {
			if (!strcmp(d->targets[d->names[slot]].name, t->name)) {
				perr(p, "duplicate name '%s' (first on line %u)", t->name, p->t[d->names[slot]].line);
				goto out_free_dir;
			}
			slot = (slot + 1) & d->names_mask;
		}
		d->names[slot] = (uint32_t)i;
		if (t->kind == ROUTER_HUB)
			d->dcs[dc].nhubs++;
		else if (t->kind == ROUTER_NODE)
			d->dcs[dc].nnodes++;
		tdc[i] = (unsigned)dc;
	}
	for (unsigned i = 0; i < d->ndcs; i++) {
		struct router_dc *dc = &d->dcs[i];
		unsigned k = 0;

		dc->hubs = malloc((dc->nhubs ? dc->nhubs : 1) * sizeof(uint32_t));
		if (!dc->hubs)
			goto out_oom;
		d->memory += dc->nhubs * sizeof(uint32_t);
		for (size_t t = 0; t < p->nt; t++)
			if (tdc[t] == i && d->targets[t].kind == ROUTER_HUB)
				dc->hubs[k++] = (uint32_t)t;
	}

	/* Pins: resolve node names, then the id table. */
	d->npins = (unsigned)p->npins;
	d->pin_mask = table_size(p->npins) - 1;
	d->pins = calloc((size_t)d->pin_mask + 1, sizeof(*d->pins));
	d->pin_nodes = malloc((p->npin_names ? p->npin_names : 1) * sizeof(uint32_t));
	if (!d->pins || !d->pin_nodes)
		goto out_oom;
	d->memory += ((size_t)d->pin_mask + 1) * sizeof(*d->pins) + p->npin_names * sizeof(uint32_t);
	for (size_t i = 0; i < p->npins; i++) {
		const struct ppin *pp = &p->pins[i];
		uint32_t slot;

		p->line = pp->line;
		for (uint32_t k = 0; k < pp->count; k++) {
			const char *name = d->strings + p->pin_names[pp->first + k];
			int t = router_dir_target_find(d, name);

			if (t < 0) {
				perr(p, "pin to unknown node '%s'", name);
				goto out_free_dir;
			}
			if (d->targets[t].kind != ROUTER_NODE) {
				perr(p, "pin to '%s', which is a %s, not a node", name, kind_names[d->targets[t].kind]);
				goto out_free_dir;
			}
			d->pin_nodes[pp->first + k] = (uint32_t)t;
		}
		slot = (uint32_t)router_project_hash(pp->id) & d->pin_mask;
		while (d->pins[slot].count) {
			if (!memcmp(d->pins[slot].id, pp->id, 16)) {
				char txt[37];
				unsigned first = 0;

				for (size_t k = 0; k < i && !first; k++)
					if (!memcmp(p->pins[k].id, pp->id, 16))
						first = p->pins[k].line;
				router_project_format(pp->id, txt);
				perr(p, "project %s already pinned on line %u", txt, first);
				goto out_free_dir;
			}
			slot = (slot + 1) & d->pin_mask;
		}
		memcpy(d->pins[slot].id, pp->id, 16);
		d->pins[slot].first = pp->first;
		d->pins[slot].count = pp->count;
	}

	if (build_pools(p, d, pb_off) == -1 || build_routes(p, d) == -1)
		goto out_free_dir;
	if (check_ring_points(p, d) == -1 || router_place_build(d, p->flags, p->err, p->errlen) == -1)
		goto out_free_dir;
	free(tdc);
	free(pb_off);
	free(nb_off);
	return d;

out_oom:
	perr(p, "out of memory");
out_free_dir:
	free(tdc);
	free(pb_off);
	free(nb_off);
	router_dir_destroy(d);
	return NULL;
}

/* Parses the text form. filename only labels errors. Returns a snapshot with
 * one reference, or NULL with "filename:line: message" in err. The text needs
 * no NUL terminator; a NUL inside it is an error. */
struct router_dir *router_dir_parse(const char *text, size_t len, const char *filename,
                                    char *err, size_t errlen)
{
	return router_dir_parse_flags(text, len, filename, 0, err, errlen);
}

struct router_dir *router_dir_parse_flags(const char *text, size_t len, const char *filename,
                                          unsigned flags, char *err, size_t errlen)
{
	struct parser p = { .file = filename ? filename : "<seed>", .err = err, .errlen = errlen, .flags = flags };
	struct router_dir *d = NULL;
	char *line = NULL;
	size_t line_room = 0, pos = 0;

	if (errlen)
		err[0] = '\0';
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

		p.line++;
		if (memchr(text + pos, '\0', n)) {
			perr(&p, "NUL byte in line");
			goto out_free;
		}
		if (n + 1 > line_room) {
			char *nb = realloc(line, n + 1);

			if (!nb) {
				perr(&p, "out of memory");
				goto out_free;
			}
			line = nb;
			line_room = n + 1;
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		if (parse_line(&p, line) == -1)
			goto out_free;
		pos += n + 1;
	}
	d = assemble(&p);
out_free:
	free(line);
	free(p.arena);
	free(p.t);
	free(p.pins);
	free(p.pin_names);
	free(p.pools);
	free(p.routes);
	return d;
}
