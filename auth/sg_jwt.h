/*
 * sg_jwt.h — project access tokens: ES256 JWTs (compact form) verified with
 * OpenSSL against a set of public keys selected by `kid` (docs/access-control.md).
 *
 * A token is  base64url(header) "." base64url(claims) "." base64url(r||s)
 *   header:  {"alg":"ES256","kid":"<key id>","typ":"JWT"}   (typ optional)
 *   claims:  {"sub":"<user>","prj":["<project uuid>",...],"exp":<unix time>,
 *             "nbf":<unix time>,"iat":<unix time>}          (nbf, iat optional)
 *
 * The library has no global state and no I/O besides reading the key file
 * and the PEM files it names; a key set is immutable once loaded and may be
 * read by any number of threads (reference counted).
 */
#ifndef SG_JWT_H
#define SG_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/types.h>

#define SG_JWT_TOKEN_MAX     4096   /* longest token accepted (HAProxy rejects longer ones first) */
#define SG_JWT_USER_MAX      64     /* bytes of `sub` */
#define SG_JWT_PROJECTS_MAX  32     /* project ids in `prj` */
#define SG_JWT_KID_MAX       64     /* bytes of a key id */
#define SG_JWT_KEYS_MAX      64     /* keys in one key file */
#define SG_JWT_LEEWAY        30     /* seconds of clock skew allowed for nbf and iat */

/* Outcomes of a check, in the order of the metrics' `result` label. */
enum sg_jwt_result {
	SG_JWT_OK,
	SG_JWT_MISSING,          /* no credential at all */
	SG_JWT_EXPIRED,          /* exp passed, or nbf/iat in the future */
	SG_JWT_BAD_SIGNATURE,    /* not 64 bytes, or does not verify */
	SG_JWT_BAD_ALG,          /* alg is anything but ES256 (none, HS256, RS256...) */
	SG_JWT_UNKNOWN_KID,      /* no key with that kid (revoked, or never known) */
	SG_JWT_FORBIDDEN,        /* valid, but the project is not granted */
	SG_JWT_MALFORMED,        /* not a compact JWT, bad base64url/JSON, missing claims */
};
#define SG_JWT_RESULT_COUNT 8

/* "ok", "missing", "expired", "bad_signature", "bad_alg", "unknown_kid",
 * "forbidden", "malformed". */
const char *sg_jwt_result_str(enum sg_jwt_result r);

/* What a verified token says. */
struct sg_jwt_claims {
	char user[SG_JWT_USER_MAX + 1];    /* `sub`, NUL-terminated, visible ASCII only */
	size_t user_len;
	unsigned nprojects;
	uint8_t projects[SG_JWT_PROJECTS_MAX][16];
	int64_t exp;
};

struct sg_jwt_keys;

/* Reads a key file: one `KID PATH` per line (PATH of a PEM public key,
 * EC P-256, relative to the key file's directory unless absolute), `#`
 * comments and blank lines ignored. NULL with "file:line: reason" in err.
 * An empty file is valid (no key: every token is refused). */
struct sg_jwt_keys *sg_jwt_keys_load(const char *path, char *err, size_t errlen);
/* One key from PEM text (tests and the fuzz target). */
struct sg_jwt_keys *sg_jwt_keys_from_pem(const char *kid, const char *pem, size_t len, char *err, size_t errlen);
struct sg_jwt_keys *sg_jwt_keys_ref(struct sg_jwt_keys *k);
void sg_jwt_keys_release(struct sg_jwt_keys **k);
unsigned sg_jwt_keys_count(const struct sg_jwt_keys *k);
/* The kids, comma-separated, for the logs (truncated to len). */
void sg_jwt_keys_describe(const struct sg_jwt_keys *k, char *out, size_t len);

/* Verifies tok[0..len) at unix time now: structure, alg, kid, signature,
 * then the claims. Fills *out on SG_JWT_OK (never FORBIDDEN: the project
 * is the caller's check, sg_jwt_grants). Never reads past len; any input
 * is safe. */
enum sg_jwt_result sg_jwt_verify(const struct sg_jwt_keys *k, const char *tok, size_t len, int64_t now,
				 struct sg_jwt_claims *out);
/* The claims step alone on decoded JSON (exposed for the fuzz target). */
enum sg_jwt_result sg_jwt_parse_claims(const char *json, size_t len, int64_t now, struct sg_jwt_claims *out);
/* Whether the claims grant project id. */
bool sg_jwt_grants(const struct sg_jwt_claims *c, const uint8_t id[16]);

/* The Cookie header hdr[0..len) without the cookie `name`: the other
 * cookies, trimmed and joined by "; ", go to rest (at most restcap bytes,
 * NUL-terminated; restcap > 3 * len / 2 + 1 always suffices: "a;b"
 * becomes "a; b"); every `name=` crumb is
 * left out. *val and *vlen: the first `name=` crumb's value. Returns 1 when
 * name was found, 0 when not (rest holds the other cookies either way),
 * -1 when rest is too small. Any input is safe. */
int sg_cookie_take(const char *hdr, size_t len, const char *name, size_t name_len, const char **val, size_t *vlen,
		   char *rest, size_t restcap, size_t *restlen);

/* base64url without padding. encode: characters written (NUL added), 0 when
 * out is too small. decode: bytes written, -1 on a bad character, padding,
 * an impossible length or non-zero trailing bits, or when out is too small. */
size_t sg_b64url_encode(const uint8_t *in, size_t len, char *out, size_t outlen);
ssize_t sg_b64url_decode(const char *in, size_t len, uint8_t *out, size_t outlen);

/* Whether pkey is an EC key on P-256 (prime256v1), the only curve of ES256. */
bool sg_jwt_is_p256(const EVP_PKEY *pkey);

/* ECDSA P-256 signatures: raw r||s (JWS) <-> DER (OpenSSL). der_from_raw
 * returns the DER length (at most 72); raw_from_der 0, or -1 when der is
 * not a P-256 signature. */
size_t sg_jwt_der_from_raw(const uint8_t raw[64], uint8_t der[72]);
int sg_jwt_raw_from_der(const uint8_t *der, size_t len, uint8_t raw[64]);

#endif /* SG_JWT_H */
