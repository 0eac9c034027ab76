/*
 * sd_curl.c — seedctl's blocking etcd v3 client, see sd_curl.h.
 *
 * etcd's JSON gateway takes the gRPC messages as JSON: keys and values are
 * base64, 64-bit integers are decimal strings, fields at their default value
 * are left out of answers (a txn that failed has no "succeeded").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "sd_curl.h"

#define PAGE_LIMIT        1000        /* keys per range page */
#define CONNECT_MAX_MS    2000
#define BODY_MAX          (256u << 20) /* an answer larger than this is refused */

struct sd_etcd {
	CURL *h;
	struct sd_etcd_spec spec;
	unsigned cur;                    /* endpoint that answered last */
	unsigned timeout_ms;
};

struct buf {
	char *p;
	size_t len, room;
	bool too_big;
};

/* ---------------------------------------------------------------------------
 * base64 (RFC 4648, with padding) — the gateway's encoding of bytes.
 */
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)u[i] << 16 | (i + 1 < len ? (unsigned)u[i + 1] << 8 : 0) |
		             (i + 2 < len ? u[i + 2] : 0);

		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < len ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < len ? b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/* Decodes into out (room >= len * 3 / 4); returns the length or -1. */
static long b64_decode(const char *s, size_t len, char *out)
{
	unsigned v = 0, bits = 0;
	long o = 0;

	for (size_t i = 0; i < len && s[i] != '='; i++) {
		const char *p = memchr(b64, s[i], 64);

		if (!p || !s[i])
			return -1;
		v = v << 6 | (unsigned)(p - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)(v >> bits & 0xff);
		}
	}
	return o;
}

/* ---------------------------------------------------------------------------
 * HTTP
 */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;

	if (b->len + n + 1 > BODY_MAX) {
		b->too_big = true;
		return 0;                        /* aborts the transfer */
	}
	if (b->len + n + 1 > b->room) {
		size_t nroom = b->room ? b->room : 4096;
		char *np;

		while (nroom < b->len + n + 1)
			nroom *= 2;
		np = realloc(b->p, nroom);
		if (!np)
			return 0;
		b->p = np;
		b->room = nroom;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return n;
}

struct sd_etcd *sd_etcd_open(const struct sd_etcd_spec *spec, unsigned timeout_ms, char *err, size_t errlen)
{
	static bool global_done;
	struct sd_etcd *c;

	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			snprintf(err, errlen, "libcurl: cannot initialise");
			return NULL;
		}
		global_done = true;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->h = curl_easy_init())) {
		free(c);
		snprintf(err, errlen, "libcurl: out of memory");
		return NULL;
	}
	c->spec = *spec;
	c->timeout_ms = timeout_ms ? timeout_ms : 10000;
	return c;
}

void sd_etcd_close(struct sd_etcd **c)
{
	if (!*c)
		return;
	curl_easy_cleanup((*c)->h);
	free(*c);
	*c = NULL;
}

/* Why a request on one endpoint failed, in words an operator reads. */
static void transport_error(CURL *h, CURLcode rc, const char *errbuf, char *out, size_t room)
{
	long os_errno = 0;

	curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
	if (rc == CURLE_OPERATION_TIMEDOUT)
		snprintf(out, room, "timed out");
	else if ((rc == CURLE_COULDNT_CONNECT || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) && os_errno) {
		snprintf(out, room, "%s", strerror((int)os_errno));
		out[0] = (char)(out[0] >= 'A' && out[0] <= 'Z' ? out[0] + 32 : out[0]);
	} else
		snprintf(out, room, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

/* gRPC's code for "try another member": no leader, leader changed, too
 * many requests, server stopping. */
#define GRPC_UNAVAILABLE 14

/* POSTs body to path on the endpoints in turn; *resp gets the parsed JSON
 * answer of the first endpoint that answered 200. For a non-idempotent
 * request (txn), only endpoints that surely did not apply it are left for
 * the next. 0, or -1 + err naming every endpoint tried. */
static int post(struct sd_etcd *c, const char *path, const char *body, bool idempotent,
                struct json_object **resp, char *err, size_t errlen)
{
	size_t eo = 0;

	*resp = NULL;
	if (errlen)
		err[0] = '\0';
	for (unsigned tried = 0; tried < c->spec.n; tried++) {
		unsigned e = (c->cur + tried) % c->spec.n;
		const char *ep = c->spec.endpoint[e];
		char url[SD_ENDPOINT_MAX + 64], errbuf[CURL_ERROR_SIZE] = "", why[256];
		struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
		struct buf b = { 0 };
		bool retry = true;
		long status = 0;
		CURLcode rc;

		snprintf(url, sizeof(url), "%s%s", ep, path);
		curl_easy_reset(c->h);
		curl_easy_setopt(c->h, CURLOPT_URL, url);
		curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
		curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT_MS,
		                 (long)(c->timeout_ms < CONNECT_MAX_MS ? c->timeout_ms : CONNECT_MAX_MS));
		curl_easy_setopt(c->h, CURLOPT_PROTOCOLS_STR, "http");
		rc = curl_easy_perform(c->h);
		curl_slist_free_all(hdr);
		if (rc != CURLE_OK) {
			if (b.too_big)
				snprintf(why, sizeof(why), "answer larger than %u MB", BODY_MAX >> 20);
			else
				transport_error(c->h, rc, errbuf, why, sizeof(why));
			/* A connection that was never made cannot have applied anything. */
			retry = idempotent || rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST;
		} else {
			struct json_object *j = json_tokener_parse(b.p ? b.p : "");

			curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
			if (status == 200 && j && json_object_is_type(j, json_type_object)) {
				free(b.p);
				c->cur = e;
				*resp = j;
				return 0;
			}
			if (j && json_object_is_type(j, json_type_object)) {
				struct json_object *m = NULL, *code = NULL;

				if (!json_object_object_get_ex(j, "message", &m))
					json_object_object_get_ex(j, "error", &m);
				json_object_object_get_ex(j, "code", &code);
				snprintf(why, sizeof(why), "%s", m ? json_object_get_string(m) : "error without message");
				retry = code && json_object_get_int(code) == GRPC_UNAVAILABLE;
			} else {
				snprintf(why, sizeof(why), "HTTP %ld, not an etcd v3 JSON answer", status);
				retry = idempotent;      /* not etcd at all: maybe the next one is */
			}
			json_object_put(j);
		}
		free(b.p);
		eo += (size_t)snprintf(err + eo, eo < errlen ? errlen - eo : 0, "%setcd at %s: %s",
		                       eo ? "; " : "", ep + 7 /* "http://" */, why);
		if (eo >= errlen)
			eo = errlen ? errlen - 1 : 0;
		if (!retry)
			return -1;
	}
	return -1;
}

/* ---------------------------------------------------------------------------
 * JSON helpers
 */

static int64_t j_int64(struct json_object *o, const char *field)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, field, &v))
		return 0;                        /* left out = default = 0 */
	return json_object_get_int64(v);      /* parses the decimal string form too */
}

static int j_add_bytes(struct json_object *o, const char *field, const char *s, size_t len)
{
	char *e = b64_encode(s, len);

	if (!e)
		return -1;
	json_object_object_add(o, field, json_object_new_string(e));
	free(e);
	return 0;
}

static void j_add_int64(struct json_object *o, const char *field, int64_t v)
{
	char n[24];

	snprintf(n, sizeof(n), "%" PRId64, v);
	json_object_object_add(o, field, json_object_new_string(n));
}

/* The first key after every key starting with p: p with its last byte
 * below 0xff incremented, trailing 0xff dropped ("\0" = no end). */
static size_t prefix_end(const char *p, size_t len, char *out)
{
	memcpy(out, p, len);
	while (len > 0) {
		if ((unsigned char)out[len - 1] < 0xff) {
			out[len - 1]++;
			return len;
		}
		len--;
	}
	out[0] = '\0';
	return 1;
}

static int j_add_range_end(struct json_object *o, const char *key, size_t klen)
{
	char *end = malloc(klen + 1);
	int r;

	if (!end)
		return -1;
	r = j_add_bytes(o, "range_end", end, prefix_end(key, klen, end));
	free(end);
	return r;
}

static int oom(char *err, size_t errlen)
{
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* Posts a JSON object (consumed) and hands back the answer. */
static int call(struct sd_etcd *c, const char *path, struct json_object *req, bool idempotent,
                struct json_object **resp, char *err, size_t errlen)
{
	const char *body = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	int r = body ? post(c, path, body, idempotent, resp, err, errlen) : oom(err, errlen);

	json_object_put(req);
	return r;
}

/* ---------------------------------------------------------------------------
 * KV
 */

void sd_kvs_free(struct sd_kvs *kvs)
{
	free(kvs->recs);
	free(kvs->meta);
	free(kvs->store);
	memset(kvs, 0, sizeof(*kvs));
}

struct kv_acc {
	struct { size_t koff, klen, voff, vlen; } *at;
	struct sd_kv_meta *meta;
	size_t n, room;
	struct buf s;
};

/* Appends one kv of an answer (base64 key/value) to the accumulator. */
static int acc_add(struct kv_acc *a, struct json_object *kv)
{
	struct json_object *k = NULL, *v = NULL;
	const char *ks, *vs;
	size_t kl, vl;
	long dk, dv;

	if (!json_object_object_get_ex(kv, "key", &k))
		return -1;
	json_object_object_get_ex(kv, "value", &v);
	ks = json_object_get_string(k);
	vs = v ? json_object_get_string(v) : "";
	kl = strlen(ks);
	vl = strlen(vs);
	if (a->n == a->room) {
		size_t nroom = a->room ? a->room * 2 : 256;
		void *na = realloc(a->at, nroom * sizeof(*a->at)), *nm;

		if (!na)
			return -1;
		a->at = na;
		nm = realloc(a->meta, nroom * sizeof(*a->meta));
		if (!nm)
			return -1;
		a->meta = nm;
		a->room = nroom;
	}
	/* room for both decoded + NULs: decoded size <= 3/4 of the text */
	if (a->s.len + kl + vl + 2 > a->s.room) {
		size_t nroom = a->s.room ? a->s.room : 65536;
		char *np;

		while (nroom < a->s.len + kl + vl + 2)
			nroom *= 2;
		np = realloc(a->s.p, nroom);
		if (!np)
			return -1;
		a->s.p = np;
		a->s.room = nroom;
	}
	dk = b64_decode(ks, kl, a->s.p + a->s.len);
	if (dk < 0)
		return -1;
	a->at[a->n].koff = a->s.len;
	a->at[a->n].klen = (size_t)dk;
	a->s.len += (size_t)dk;
	a->s.p[a->s.len++] = '\0';
	dv = b64_decode(vs, vl, a->s.p + a->s.len);
	if (dv < 0)
		return -1;
	a->at[a->n].voff = a->s.len;
	a->at[a->n].vlen = (size_t)dv;
	a->s.len += (size_t)dv;
	a->s.p[a->s.len++] = '\0';
	a->meta[a->n].create_revision = j_int64(kv, "create_revision");
	a->meta[a->n].mod_revision = j_int64(kv, "mod_revision");
	a->meta[a->n].lease = j_int64(kv, "lease");
	a->n++;
	return 0;
}

int sd_etcd_range(struct sd_etcd *c, const char *key, bool prefix, int64_t revision,
                  struct sd_kvs *out, char *err, size_t errlen)
{
	size_t klen = strlen(key);
	char *next = malloc(klen + 1);
	size_t nlen = klen;
	struct kv_acc a = { 0 };
	int ret = -1;

	memset(out, 0, sizeof(*out));
	if (!next)
		return oom(err, errlen);
	memcpy(next, key, klen);
	for (;;) {
		struct json_object *req = json_object_new_object(), *resp = NULL, *kvs = NULL, *more = NULL, *hdr;
		bool has_more;
		size_t nkv;

		if (!req || j_add_bytes(req, "key", next, nlen) == -1 ||
		    (prefix && j_add_range_end(req, key, klen) == -1)) {
			json_object_put(req);
			oom(err, errlen);
			goto out;
		}
		if (prefix)
			j_add_int64(req, "limit", PAGE_LIMIT);
		if (revision > 0)
			j_add_int64(req, "revision", revision);
		if (call(c, "/v3/kv/range", req, true, &resp, err, errlen) == -1)
			goto out;
		if (revision <= 0 && json_object_object_get_ex(resp, "header", &hdr))
			revision = j_int64(hdr, "revision");   /* pin the next pages to it */
		json_object_object_get_ex(resp, "kvs", &kvs);
		json_object_object_get_ex(resp, "more", &more);
		nkv = kvs ? json_object_array_length(kvs) : 0;
		for (size_t i = 0; i < nkv; i++)
			if (acc_add(&a, json_object_array_get_idx(kvs, i)) == -1) {
				json_object_put(resp);
				snprintf(err, errlen, "etcd: malformed range answer (or out of memory)");
				goto out;
			}
		has_more = more && json_object_get_boolean(more);
		json_object_put(resp);               /* kvs and more belong to it */
		if (!prefix || !has_more || nkv == 0)
			break;
		/* next page: just after the last key read */
		{
			size_t ll = a.at[a.n - 1].klen;
			char *nn = realloc(next, ll + 1);

			if (!nn) {
				oom(err, errlen);
				goto out;
			}
			next = nn;
			memcpy(next, a.s.p + a.at[a.n - 1].koff, ll);
			next[ll] = '\0';
			nlen = ll + 1;
		}
	}
	out->recs = calloc(a.n ? a.n : 1, sizeof(*out->recs));
	if (!out->recs) {
		oom(err, errlen);
		goto out;
	}
	for (size_t i = 0; i < a.n; i++) {
		out->recs[i].key = a.s.p + a.at[i].koff;
		out->recs[i].key_len = a.at[i].klen;
		out->recs[i].value = a.s.p + a.at[i].voff;
		out->recs[i].value_len = a.at[i].vlen;
	}
	out->meta = a.meta;
	out->n = a.n;
	out->store = a.s.p;
	out->revision = revision;
	a.meta = NULL;
	a.s.p = NULL;
	ret = 0;
out:
	free(next);
	free(a.at);
	free(a.meta);
	free(a.s.p);
	return ret;
}

int sd_etcd_txn(struct sd_etcd *c, const struct sd_cmp *cmps, size_t ncmps, const struct sd_op *ops,
                size_t nops, bool *succeeded, int64_t *revision, char *err, size_t errlen)
{
	static const char *const target[] = { "VALUE", "MOD", "CREATE", "VERSION" };
	static const char *const field[] = { "value", "mod_revision", "create_revision", "version" };
	static const char *const result[] = { "EQUAL", "NOT_EQUAL", "LESS", "GREATER" };
	struct json_object *req = json_object_new_object(), *jc = json_object_new_array(),
	                   *js = json_object_new_array(), *resp = NULL, *ok = NULL, *hdr = NULL;

	*succeeded = false;
	if (nops > SD_TXN_MAX_OPS) {
		json_object_put(req);
		json_object_put(jc);
		json_object_put(js);
		snprintf(err, errlen, "etcd: %zu operations in one transaction (max %d)", nops, SD_TXN_MAX_OPS);
		return -1;
	}
	if (!req || !jc || !js)
		goto oom;
	json_object_object_add(req, "compare", jc);
	json_object_object_add(req, "success", js);
	for (size_t i = 0; i < ncmps; i++) {
		const struct sd_cmp *m = &cmps[i];
		struct json_object *o = json_object_new_object();

		if (!o || json_object_array_add(jc, o))
			goto oom;
		json_object_object_add(o, "target", json_object_new_string(target[m->target]));
		json_object_object_add(o, "result", json_object_new_string(result[m->result]));
		if (j_add_bytes(o, "key", m->key, strlen(m->key)) == -1 ||
		    (m->prefix && j_add_range_end(o, m->key, strlen(m->key)) == -1))
			goto oom;
		if (m->target == SD_CMP_VALUE) {
			if (j_add_bytes(o, "value", m->value, m->value_len) == -1)
				goto oom;
		} else
			j_add_int64(o, field[m->target], m->number);
	}
	for (size_t i = 0; i < nops; i++) {
		const struct sd_op *p = &ops[i];
		struct json_object *o = json_object_new_object(), *r = json_object_new_object();

		if (!o || !r || json_object_array_add(js, o)) {
			json_object_put(r);
			goto oom;
		}
		if (p->kind == SD_OP_PUT) {
			json_object_object_add(o, "request_put", r);
			if (j_add_bytes(r, "value", p->value, p->value_len) == -1)
				goto oom;
			if (p->lease)
				j_add_int64(r, "lease", p->lease);
		} else
			json_object_object_add(o, "request_delete_range", r);
		if (j_add_bytes(r, "key", p->key, p->key_len) == -1 ||
		    (p->kind == SD_OP_DELETE_PREFIX && j_add_range_end(r, p->key, p->key_len) == -1))
			goto oom;
	}
	if (call(c, "/v3/kv/txn", req, false, &resp, err, errlen) == -1)
		return -1;
	*succeeded = json_object_object_get_ex(resp, "succeeded", &ok) && json_object_get_boolean(ok);
	if (revision)
		*revision = json_object_object_get_ex(resp, "header", &hdr) ? j_int64(hdr, "revision") : 0;
	json_object_put(resp);
	return 0;
oom:
	json_object_put(req);
	return oom(err, errlen);
}

/* ---------------------------------------------------------------------------
 * Leases
 */

static int lease_call(struct sd_etcd *c, const char *path, const char *f1, int64_t v1,
                      struct json_object **resp, char *err, size_t errlen)
{
	struct json_object *req = json_object_new_object();

	if (!req)
		return oom(err, errlen);
	j_add_int64(req, f1, v1);
	return call(c, path, req, true, resp, err, errlen);
}

int sd_etcd_lease_grant(struct sd_etcd *c, int64_t ttl, int64_t *id, char *err, size_t errlen)
{
	struct json_object *resp;

	if (lease_call(c, "/v3/lease/grant", "TTL", ttl, &resp, err, errlen) == -1)
		return -1;
	*id = j_int64(resp, "ID");
	json_object_put(resp);
	if (*id == 0) {
		snprintf(err, errlen, "etcd: lease grant answered without a lease id");
		return -1;
	}
	return 0;
}

int sd_etcd_lease_keepalive(struct sd_etcd *c, int64_t id, int64_t *ttl, char *err, size_t errlen)
{
	struct json_object *resp, *res;

	/* A stream in gRPC; through the gateway, one request gets one
	 * {"result": {...}} answer and the stream ends. */
	if (lease_call(c, "/v3/lease/keepalive", "ID", id, &resp, err, errlen) == -1)
		return -1;
	*ttl = json_object_object_get_ex(resp, "result", &res) ? j_int64(res, "TTL") : 0;
	json_object_put(resp);
	return 0;
}

int sd_etcd_lease_revoke(struct sd_etcd *c, int64_t id, char *err, size_t errlen)
{
	struct json_object *resp;

	if (lease_call(c, "/v3/lease/revoke", "ID", id, &resp, err, errlen) == -1)
		return strstr(err, "lease not found") ? 0 : -1;
	json_object_put(resp);
	return 0;
}
