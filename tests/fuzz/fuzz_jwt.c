/*
 * fuzz_jwt.c — the token verifier on arbitrary bytes. The first byte picks
 * the entry point: 0 mod 4 sg_jwt_verify (with a fixed key under kid
 * "fuzz", at a fixed time), 1 the claims parser alone (what a signed token
 * carries), 2 base64url and the raw<->DER signature conversions, 3 the
 * Cookie header split (sg_cookie_take). Corpus:
 * tests/fuzz/corpus/jwt/ (a valid token for the fixed key, tampered ones,
 * alg none/HS256, unknown kid, bad JSON, claims variants).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sg_jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_pem[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBEKCHv6MX8oPJhGctPopbvgBQsqc\n"
	"cJA2tIDYtpHM5wkwrKxaAPueGNqYqFKCDz7JJTcaYmlF3UtC6sOth7/MQg==\n"
	"-----END PUBLIC KEY-----\n";

#define FUZZ_NOW 1700000000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sg_jwt_keys *keys;
	struct sg_jwt_claims c;
	enum sg_jwt_result r;
	char err[256];

	if (!keys) {
		keys = sg_jwt_keys_from_pem("fuzz", fuzz_pem, sizeof(fuzz_pem) - 1, err, sizeof(err));
		if (!keys)
			abort();
	}
	if (size == 0)
		return 0;
	switch (data[0] % 4) {
	case 0:
		memset(&c, 0xa5, sizeof(c));
		r = sg_jwt_verify(keys, (const char *)data + 1, size - 1, FUZZ_NOW, &c);
		if ((unsigned)r >= SG_JWT_RESULT_COUNT || r == SG_JWT_FORBIDDEN)
			abort();
		if (r == SG_JWT_OK && (c.user_len == 0 || c.user_len > SG_JWT_USER_MAX || c.user[c.user_len] != 0 ||
				       c.nprojects > SG_JWT_PROJECTS_MAX || c.exp <= FUZZ_NOW))
			abort();
		break;
	case 1:
		r = sg_jwt_parse_claims((const char *)data + 1, size - 1, FUZZ_NOW, &c);
		if (r != SG_JWT_OK && r != SG_JWT_EXPIRED && r != SG_JWT_MALFORMED)
			abort();
		break;
	case 3: {
		char rest[4096];
		const char *v = NULL;
		size_t rl = 0, vl = 0;
		int f = sg_cookie_take((const char *)data + 1, size - 1, "sg_token", 8, &v, &vl, rest, sizeof(rest), &rl);

		if (f < -1 || f > 1 || (f >= 0 && (rl >= sizeof(rest) || rest[rl] != 0 || rl > 3 * size / 2 + 1)))
			abort();
		if (f == 1 && (v < (const char *)data + 1 || v + vl > (const char *)data + size))
			abort();
		break;
	}
	default: {
		uint8_t out[4096], der[72], raw[64], raw2[64];
		char enc[8192];
		ssize_t n = sg_b64url_decode((const char *)data + 1, size - 1, out, sizeof(out));

		if (n >= 0) {
			/* a decoded string encodes back to the same text */
			size_t m = sg_b64url_encode(out, (size_t)n, enc, sizeof(enc));

			if (m != size - 1 || memcmp(enc, data + 1, m) != 0)
				abort();
		}
		if (sg_jwt_raw_from_der(data + 1, size - 1, raw) == 0) {
			size_t dl = sg_jwt_der_from_raw(raw, der);

			if (dl > sizeof(der) || sg_jwt_raw_from_der(der, dl, raw2) != 0 || memcmp(raw, raw2, 64) != 0)
				abort();
		}
		if (size - 1 >= 64) {
			size_t dl = sg_jwt_der_from_raw(data + 1, der);

			if (sg_jwt_raw_from_der(der, dl, raw2) != 0 || memcmp(data + 1, raw2, 64) != 0)
				abort();
		}
	}
	}
	return 0;
}
