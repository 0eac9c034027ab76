/*
 * sg_jwt.c — ES256 JWT verification with OpenSSL 3 and json-c.
 */
#include "auth/sg_jwt.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "router.h"

#define HEADER_MAX   512                      /* decoded header bytes */
#define CLAIMS_MAX   SG_JWT_TOKEN_MAX         /* decoded claims bytes */
#define JSON_DEPTH   4

struct sg_jwt_key {
	char kid[SG_JWT_KID_MAX + 1];
	size_t kid_len;
	EVP_PKEY *pkey;
};

struct sg_jwt_keys {
	atomic_uint refs;
	unsigned count;
	struct sg_jwt_key key[SG_JWT_KEYS_MAX];
};

static const char *const result_names[SG_JWT_RESULT_COUNT] = {
	"ok", "missing", "expired", "bad_signature", "bad_alg", "unknown_kid", "forbidden", "malformed",
};

const char *sg_jwt_result_str(enum sg_jwt_result r)
{
	return (unsigned)r < SG_JWT_RESULT_COUNT ? result_names[r] : "malformed";
}

/* ------------------------------------------------------------------------ */
/* base64url */

static const char b64url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t sg_b64url_encode(const uint8_t *in, size_t len, char *out, size_t outlen)
{
	size_t need = len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0), o = 0, i = 0;

	if (outlen < need + 1)
		return 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = b64url_chars[v >> 18 & 63];
		out[o++] = b64url_chars[v >> 12 & 63];
		out[o++] = b64url_chars[v >> 6 & 63];
		out[o++] = b64url_chars[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = b64url_chars[v >> 18 & 63];
		out[o++] = b64url_chars[v >> 12 & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = b64url_chars[v >> 18 & 63];
		out[o++] = b64url_chars[v >> 12 & 63];
		out[o++] = b64url_chars[v >> 6 & 63];
	}
	out[o] = 0;
	return o;
}

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

ssize_t sg_b64url_decode(const char *in, size_t len, uint8_t *out, size_t outlen)
{
	size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0), o = 0;
	uint32_t acc = 0;
	unsigned bits = 0;

	if (len % 4 == 1 || need > outlen)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64url_value((unsigned char)in[i]);

		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)            /* non-zero trailing bits: not the canonical form */
		return -1;
	return (ssize_t)o;
}

/* ------------------------------------------------------------------------ */
/* Cookies */

static bool cookie_space(char c)
{
	return c == ' ' || c == '\t';
}

int sg_cookie_take(const char *hdr, size_t len, const char *name, size_t name_len, const char **val, size_t *vlen,
		   char *rest, size_t restcap, size_t *restlen)
{
	const char *p = hdr, *end = hdr + len;
	size_t out = 0;
	int found = 0;

	if (restcap == 0)
		return -1;
	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p)), *e = semi ? semi : end, *eq;

		while (p < e && cookie_space(*p))
			p++;
		while (e > p && cookie_space(e[-1]))
			e--;
		if (e > p) {
			eq = memchr(p, '=', (size_t)(e - p));
			if (eq && (size_t)(eq - p) == name_len && memcmp(p, name, name_len) == 0) {
				if (!found) {
					const char *v = eq + 1;

					while (v < e && cookie_space(*v))
						v++;
					*val = v;
					*vlen = (size_t)(e - v);
					found = 1;
				}
			} else {
				size_t n = (size_t)(e - p) + (out ? 2 : 0);

				if (out + n >= restcap)
					return -1;
				if (out) {
					rest[out++] = ';';
					rest[out++] = ' ';
				}
				memcpy(rest + out, p, (size_t)(e - p));
				out += (size_t)(e - p);
			}
		}
		p = semi ? semi + 1 : end;
	}
	rest[out] = 0;
	*restlen = out;
	return found;
}

/* ------------------------------------------------------------------------ */
/* Signatures: JWS carries r||s (32 + 32 bytes), OpenSSL wants DER. */

/* One DER INTEGER of a 32-byte unsigned big-endian value at p. */
static size_t der_integer(const uint8_t v[32], uint8_t *p)
{
	size_t skip = 0, n;

	while (skip < 31 && v[skip] == 0)
		skip++;
	n = 32 - skip;
	p[0] = 0x02;
	if (v[skip] & 0x80) {
		p[1] = (uint8_t)(n + 1);
		p[2] = 0;
		memcpy(p + 3, v + skip, n);
		return n + 3;
	}
	p[1] = (uint8_t)n;
	memcpy(p + 2, v + skip, n);
	return n + 2;
}

size_t sg_jwt_der_from_raw(const uint8_t raw[64], uint8_t der[72])
{
	size_t n = 2;

	n += der_integer(raw, der + n);
	n += der_integer(raw + 32, der + n);
	der[0] = 0x30;
	der[1] = (uint8_t)(n - 2);
	return n;
}

/* One DER INTEGER at *p (bounded by end) into 32 bytes big-endian. */
static int der_read_integer(const uint8_t **p, const uint8_t *end, uint8_t out[32])
{
	const uint8_t *q = *p;
	size_t n;

	if (end - q < 2 || q[0] != 0x02 || q[1] == 0 || q[1] > 33 || (size_t)(end - q - 2) < q[1])
		return -1;
	n = q[1];
	q += 2;
	if (n == 33) {
		if (q[0] != 0)
			return -1;
		q++;
		n--;
	}
	memset(out, 0, 32);
	memcpy(out + 32 - n, q, n);
	*p = q + n;
	return 0;
}

int sg_jwt_raw_from_der(const uint8_t *der, size_t len, uint8_t raw[64])
{
	const uint8_t *p = der, *end = der + len;

	if (len < 2 || der[0] != 0x30 || der[1] != len - 2)
		return -1;
	p += 2;
	if (der_read_integer(&p, end, raw) == -1 || der_read_integer(&p, end, raw + 32) == -1 || p != end)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Keys */

static bool kid_valid(const char *s, size_t len)
{
	if (len == 0 || len > SG_JWT_KID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

bool sg_jwt_is_p256(const EVP_PKEY *pkey)
{
	char group[32] = "";
	size_t glen = 0;

	return EVP_PKEY_is_a(pkey, "EC") &&
	       EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &glen) &&
	       strcmp(group, "prime256v1") == 0;
}

/* The PEM's public key if it is EC P-256, else NULL with the reason. */
static EVP_PKEY *pem_p256(BIO *bio, char *why, size_t whylen)
{
	EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

	if (!pkey) {
		snprintf(why, whylen, "not a PEM public key (BEGIN PUBLIC KEY)");
		return NULL;
	}
	if (!sg_jwt_is_p256(pkey)) {
		snprintf(why, whylen, "not an EC P-256 key (ES256 needs prime256v1)");
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

static struct sg_jwt_keys *keys_new(void)
{
	struct sg_jwt_keys *k = calloc(1, sizeof(*k));

	if (k)
		atomic_init(&k->refs, 1);
	return k;
}

static int keys_add(struct sg_jwt_keys *k, const char *kid, size_t kid_len, EVP_PKEY *pkey, char *why, size_t whylen)
{
	for (unsigned i = 0; i < k->count; i++)
		if (k->key[i].kid_len == kid_len && memcmp(k->key[i].kid, kid, kid_len) == 0) {
			snprintf(why, whylen, "kid '%.*s' listed twice", (int)kid_len, kid);
			return -1;
		}
	if (k->count == SG_JWT_KEYS_MAX) {
		snprintf(why, whylen, "more than %d keys", SG_JWT_KEYS_MAX);
		return -1;
	}
	memcpy(k->key[k->count].kid, kid, kid_len);
	k->key[k->count].kid[kid_len] = 0;
	k->key[k->count].kid_len = kid_len;
	k->key[k->count].pkey = pkey;
	k->count++;
	return 0;
}

struct sg_jwt_keys *sg_jwt_keys_from_pem(const char *kid, const char *pem, size_t len, char *err, size_t errlen)
{
	struct sg_jwt_keys *k = keys_new();
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *pkey = NULL;
	char why[200];

	if (!k || !bio) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (!kid_valid(kid, strlen(kid))) {
		snprintf(err, errlen, "bad kid '%s'", kid);
		goto fail;
	}
	pkey = pem_p256(bio, why, sizeof(why));
	if (!pkey) {
		snprintf(err, errlen, "%s", why);
		goto fail;
	}
	keys_add(k, kid, strlen(kid), pkey, why, sizeof(why));
	BIO_free(bio);
	return k;
fail:
	BIO_free(bio);
	sg_jwt_keys_release(&k);
	return NULL;
}

struct sg_jwt_keys *sg_jwt_keys_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	struct sg_jwt_keys *k = NULL;
	char line[1200], why[300], full[4200];
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path) : 0;
	unsigned lineno = 0;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	k = keys_new();
	if (!k) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *kid, *file, *rest;
		size_t n = strlen(line);
		BIO *bio;
		EVP_PKEY *pkey;

		lineno++;
		if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
			snprintf(err, errlen, "%s:%u: line too long", path, lineno);
			goto fail;
		}
		if ((p = strchr(line, '#')))
			*p = 0;
		kid = strtok_r(line, " \t\r\n", &rest);
		if (!kid)
			continue;
		file = strtok_r(NULL, " \t\r\n", &rest);
		if (!file || strtok_r(NULL, " \t\r\n", &rest)) {
			snprintf(err, errlen, "%s:%u: expected 'KID PEM-FILE'", path, lineno);
			goto fail;
		}
		if (!kid_valid(kid, strlen(kid))) {
			snprintf(err, errlen, "%s:%u: bad kid '%.64s' (1-%d of [A-Za-z0-9._-])", path, lineno, kid,
				 SG_JWT_KID_MAX);
			goto fail;
		}
		if (file[0] == '/' || !slash)
			snprintf(full, sizeof(full), "%s", file);
		else
			snprintf(full, sizeof(full), "%.*s/%s", dirlen, path, file);
		bio = BIO_new_file(full, "r");
		if (!bio) {
			snprintf(err, errlen, "%s:%u: %s: %s", path, lineno, full, strerror(errno ? errno : ENOENT));
			goto fail;
		}
		pkey = pem_p256(bio, why, sizeof(why));
		BIO_free(bio);
		if (!pkey) {
			snprintf(err, errlen, "%s:%u: %s: %s", path, lineno, full, why);
			goto fail;
		}
		if (keys_add(k, kid, strlen(kid), pkey, why, sizeof(why)) == -1) {
			EVP_PKEY_free(pkey);
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			goto fail;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto fail;
	}
	fclose(f);
	return k;
fail:
	fclose(f);
	sg_jwt_keys_release(&k);
	return NULL;
}

struct sg_jwt_keys *sg_jwt_keys_ref(struct sg_jwt_keys *k)
{
	if (k)
		atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
	return k;
}

void sg_jwt_keys_release(struct sg_jwt_keys **kp)
{
	struct sg_jwt_keys *k = *kp;

	*kp = NULL;
	if (!k || atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (unsigned i = 0; i < k->count; i++)
		EVP_PKEY_free(k->key[i].pkey);
	free(k);
}

unsigned sg_jwt_keys_count(const struct sg_jwt_keys *k)
{
	return k ? k->count : 0;
}

void sg_jwt_keys_describe(const struct sg_jwt_keys *k, char *out, size_t len)
{
	size_t off = 0;

	if (len)
		out[0] = 0;
	for (unsigned i = 0; k && i < k->count && off < len; i++) {
		int n = snprintf(out + off, len - off, "%s%s", i ? "," : "", k->key[i].kid);

		if (n < 0)
			break;
		off += (size_t)n;
	}
}

static const struct sg_jwt_key *keys_find(const struct sg_jwt_keys *k, const char *kid, size_t len)
{
	for (unsigned i = 0; k && i < k->count; i++)
		if (k->key[i].kid_len == len && memcmp(k->key[i].kid, kid, len) == 0)
			return &k->key[i];
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* JSON */

/* The object parsed from exactly json[0..len), or NULL (trailing bytes,
 * depth beyond JSON_DEPTH, not an object). */
static json_object *json_parse_object(const char *json, size_t len)
{
	json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
	json_object *o = NULL;

	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	if (len <= (size_t)INT32_MAX)
		o = json_tokener_parse_ex(tok, json, (int)len);
	if (o && (json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != len ||
		  !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* A string member, or NULL when absent or not a string. */
static const char *json_str(json_object *o, const char *name, size_t *len)
{
	json_object *v;

	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	*len = (size_t)json_object_get_string_len(v);
	return json_object_get_string(v);
}

/* A numeric date member: 1 found (in *out), 0 absent, -1 present but not
 * a number in range. */
static int json_time(json_object *o, const char *name, int64_t *out)
{
	json_object *v;
	double d;

	if (!json_object_object_get_ex(o, name, &v))
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return 1;
	}
	if (!json_object_is_type(v, json_type_double))
		return -1;
	d = json_object_get_double(v);
	if (!(d >= -9.0e15 && d <= 9.0e15))
		return -1;
	*out = (int64_t)d;
	return 1;
}

enum sg_jwt_result sg_jwt_parse_claims(const char *json, size_t len, int64_t now, struct sg_jwt_claims *out)
{
	json_object *o = json_parse_object(json, len), *prj;
	enum sg_jwt_result r = SG_JWT_MALFORMED;
	const char *sub;
	size_t sub_len, n;
	int64_t exp = 0, nbf = 0, iat = 0;
	int has_nbf, has_iat;

	if (!o)
		return SG_JWT_MALFORMED;
	sub = json_str(o, "sub", &sub_len);
	if (!sub || sub_len == 0 || sub_len > SG_JWT_USER_MAX)
		goto out;
	for (size_t i = 0; i < sub_len; i++)     /* it becomes an HTTP header value */
		if ((unsigned char)sub[i] <= 0x20 || (unsigned char)sub[i] >= 0x7f)
			goto out;
	if (json_time(o, "exp", &exp) != 1)
		goto out;
	has_nbf = json_time(o, "nbf", &nbf);
	has_iat = json_time(o, "iat", &iat);
	if (has_nbf < 0 || has_iat < 0)
		goto out;
	if (!json_object_object_get_ex(o, "prj", &prj) || !json_object_is_type(prj, json_type_array))
		goto out;
	n = json_object_array_length(prj);
	if (n > SG_JWT_PROJECTS_MAX)
		goto out;
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(prj, i);

		if (!e || !json_object_is_type(e, json_type_string) ||
		    router_project_parse(json_object_get_string(e), (size_t)json_object_get_string_len(e),
					 out->projects[i]) != 0)
			goto out;
	}
	out->nprojects = (unsigned)n;
	memcpy(out->user, sub, sub_len);
	out->user[sub_len] = 0;
	out->user_len = sub_len;
	out->exp = exp;
	if (exp <= now || (has_nbf && nbf > now + SG_JWT_LEEWAY) || (has_iat && iat > now + SG_JWT_LEEWAY))
		r = SG_JWT_EXPIRED;
	else
		r = SG_JWT_OK;
out:
	json_object_put(o);
	return r;
}

/* Header checks: alg first (so that alg=none/HS256 answers bad_alg whatever
 * the kid), then typ/crit, then the kid. */
static enum sg_jwt_result check_header(const struct sg_jwt_keys *k, const char *json, size_t len,
				       const struct sg_jwt_key **key)
{
	json_object *o = json_parse_object(json, len), *crit;
	enum sg_jwt_result r = SG_JWT_MALFORMED;
	const char *alg, *kid, *typ;
	size_t alg_len, kid_len, typ_len;

	if (!o)
		return SG_JWT_MALFORMED;
	alg = json_str(o, "alg", &alg_len);
	if (!alg)
		goto out;
	if (alg_len != 5 || memcmp(alg, "ES256", 5) != 0) {
		r = SG_JWT_BAD_ALG;
		goto out;
	}
	typ = json_str(o, "typ", &typ_len);
	if (json_object_object_get_ex(o, "typ", NULL) && (!typ || typ_len != 3 || strncasecmp(typ, "JWT", 3) != 0))
		goto out;
	if (json_object_object_get_ex(o, "crit", &crit))   /* no extension is understood */
		goto out;
	kid = json_str(o, "kid", &kid_len);
	if (!kid || !kid_valid(kid, kid_len))
		goto out;
	*key = keys_find(k, kid, kid_len);
	r = *key ? SG_JWT_OK : SG_JWT_UNKNOWN_KID;
out:
	json_object_put(o);
	return r;
}

static bool verify_es256(EVP_PKEY *pkey, const char *msg, size_t len, const uint8_t raw[64])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t der[72];
	size_t der_len = sg_jwt_der_from_raw(raw, der);
	bool ok;

	if (!ctx)
		return false;
	ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	     EVP_DigestVerify(ctx, der, der_len, (const unsigned char *)msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

enum sg_jwt_result sg_jwt_verify(const struct sg_jwt_keys *k, const char *tok, size_t len, int64_t now,
				 struct sg_jwt_claims *out)
{
	const char *dot1, *dot2, *p2, *p3;
	const struct sg_jwt_key *key = NULL;
	uint8_t header[HEADER_MAX], sig[64];
	uint8_t *claims;
	ssize_t hlen, clen;
	enum sg_jwt_result r;

	if (len == 0)
		return SG_JWT_MISSING;
	if (len > SG_JWT_TOKEN_MAX)
		return SG_JWT_MALFORMED;
	dot1 = memchr(tok, '.', len);
	if (!dot1)
		return SG_JWT_MALFORMED;
	p2 = dot1 + 1;
	dot2 = memchr(p2, '.', len - (size_t)(p2 - tok));
	if (!dot2)
		return SG_JWT_MALFORMED;
	p3 = dot2 + 1;
	if (memchr(p3, '.', len - (size_t)(p3 - tok)))
		return SG_JWT_MALFORMED;
	hlen = sg_b64url_decode(tok, (size_t)(dot1 - tok), header, sizeof(header));
	if (hlen <= 0)
		return SG_JWT_MALFORMED;
	r = check_header(k, (const char *)header, (size_t)hlen, &key);
	if (r != SG_JWT_OK)
		return r;
	if (sg_b64url_decode(p3, len - (size_t)(p3 - tok), sig, sizeof(sig)) != 64)
		return SG_JWT_BAD_SIGNATURE;
	if (!verify_es256(key->pkey, tok, (size_t)(dot2 - tok), sig))
		return SG_JWT_BAD_SIGNATURE;
	/* Signed by a key we trust: only now read the claims. */
	claims = malloc(CLAIMS_MAX);
	if (!claims)
		return SG_JWT_MALFORMED;
	clen = sg_b64url_decode(p2, (size_t)(dot2 - p2), claims, CLAIMS_MAX);
	r = clen <= 0 ? SG_JWT_MALFORMED : sg_jwt_parse_claims((const char *)claims, (size_t)clen, now, out);
	free(claims);
	return r;
}

bool sg_jwt_grants(const struct sg_jwt_claims *c, const uint8_t id[16])
{
	for (unsigned i = 0; i < c->nprojects; i++)
		if (memcmp(c->projects[i], id, 16) == 0)
			return true;
	return false;
}
