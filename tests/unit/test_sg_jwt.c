/*
 * test_sg_jwt.c — the token verifier's outcomes on the fuzz corpus's
 * tokens (tests/fuzz/corpus/jwt/verify-*: one file per case, signed with
 * the fuzz target's key), the claims it returns, base64url and the
 * signature conversions, and key file errors with file:line.
 * Run from the repository root (tests/run-all.sh does).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/sg_jwt.h"
#include "router.h"

static const char fuzz_pem[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBEKCHv6MX8oPJhGctPopbvgBQsqc\n"
	"cJA2tIDYtpHM5wkwrKxaAPueGNqYqFKCDz7JJTcaYmlF3UtC6sOth7/MQg==\n"
	"-----END PUBLIC KEY-----\n";
#define NOW 1700000000

static size_t read_case(const char *name, char *buf, size_t len)
{
	char path[256];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "tests/fuzz/corpus/jwt/%s", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	n = fread(buf, 1, len, f);
	fclose(f);
	assert_true(n >= 1 && buf[0] == 0);     /* mode byte 0: sg_jwt_verify */
	return n;
}

static void test_verify_outcomes(void **state)
{
	static const struct { const char *file; enum sg_jwt_result want; } cases[] = {
		{ "verify-valid", SG_JWT_OK },
		{ "verify-float-exp", SG_JWT_OK },
		{ "verify-expired", SG_JWT_EXPIRED },
		{ "verify-nbf-future", SG_JWT_EXPIRED },
		{ "verify-no-prj", SG_JWT_MALFORMED },
		{ "verify-many-prj", SG_JWT_MALFORMED },
		{ "verify-typ-bad", SG_JWT_MALFORMED },
		{ "verify-crit", SG_JWT_MALFORMED },
		{ "verify-unknown-kid", SG_JWT_UNKNOWN_KID },
		{ "verify-tampered", SG_JWT_BAD_SIGNATURE },
		{ "verify-sig-short", SG_JWT_BAD_SIGNATURE },
		{ "verify-none", SG_JWT_BAD_ALG },
		{ "verify-hs256", SG_JWT_BAD_ALG },
		{ "verify-two-parts", SG_JWT_MALFORMED },
		{ "verify-four-parts", SG_JWT_MALFORMED },
		{ "verify-bad-b64", SG_JWT_MALFORMED },
		{ "verify-bad-json", SG_JWT_MALFORMED },
		{ "verify-deep-json", SG_JWT_MALFORMED },
		{ "verify-empty", SG_JWT_MISSING },
	};
	char err[256], buf[8192];
	struct sg_jwt_keys *k = sg_jwt_keys_from_pem("fuzz", fuzz_pem, sizeof(fuzz_pem) - 1, err, sizeof(err));

	(void)state;
	assert_non_null(k);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sg_jwt_claims c;
		size_t n = read_case(cases[i].file, buf, sizeof(buf));
		enum sg_jwt_result r = sg_jwt_verify(k, buf + 1, n - 1, NOW, &c);

		if (r != cases[i].want)
			fail_msg("%s: %s, expected %s", cases[i].file, sg_jwt_result_str(r), sg_jwt_result_str(cases[i].want));
	}
	sg_jwt_keys_release(&k);
}

static void test_claims(void **state)
{
	char err[256], buf[8192];
	struct sg_jwt_keys *k = sg_jwt_keys_from_pem("fuzz", fuzz_pem, sizeof(fuzz_pem) - 1, err, sizeof(err));
	struct sg_jwt_claims c;
	uint8_t id[16], other[16];
	size_t n = read_case("verify-valid", buf, sizeof(buf));

	(void)state;
	assert_int_equal(sg_jwt_verify(k, buf + 1, n - 1, NOW, &c), SG_JWT_OK);
	assert_string_equal(c.user, "alice");
	assert_int_equal(c.user_len, 5);
	assert_int_equal(c.exp, 2000000000);
	assert_int_equal(c.nprojects, 1);
	assert_int_equal(router_project_parse("2F1C3D4E-5A6B-4C7D-8E9F-0A1B2C3D4E5F", 36, id), 0);
	assert_true(sg_jwt_grants(&c, id));
	assert_int_equal(router_project_parse("2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e50", 36, other), 0);
	assert_false(sg_jwt_grants(&c, other));
	/* after exp: expired; a header injection in sub: malformed */
	assert_int_equal(sg_jwt_verify(k, buf + 1, n - 1, 2000000000, &c), SG_JWT_EXPIRED);
	assert_int_equal(sg_jwt_parse_claims("{\"sub\":\"a\\r\\nX: 1\",\"prj\":[],\"exp\":2000000000}", 45, NOW, &c),
			 SG_JWT_MALFORMED);
	/* the same token with no key at all: unknown kid */
	sg_jwt_keys_release(&k);
	assert_int_equal(sg_jwt_verify(NULL, buf + 1, n - 1, NOW, &c), SG_JWT_UNKNOWN_KID);
}

static void test_b64url_and_der(void **state)
{
	uint8_t out[16], raw[64], raw2[64], der[72];
	char enc[32];

	(void)state;
	assert_int_equal(sg_b64url_encode((const uint8_t *)"\xfb\xff", 2, enc, sizeof(enc)), 3);
	assert_string_equal(enc, "-_8");
	assert_int_equal(sg_b64url_decode("-_8", 3, out, sizeof(out)), 2);
	assert_int_equal(sg_b64url_decode("-_9", 3, out, sizeof(out)), -1);    /* trailing bits */
	assert_int_equal(sg_b64url_decode("QQ==", 4, out, sizeof(out)), -1);   /* padding */
	assert_int_equal(sg_b64url_decode("Q", 1, out, sizeof(out)), -1);
	assert_int_equal(sg_b64url_decode("a+b/", 4, out, sizeof(out)), -1);   /* base64, not base64url */
	memset(raw, 0, sizeof(raw));
	raw[31] = 1;                    /* r = 1 */
	memset(raw + 32, 0xff, 32);     /* s with the high bit set: a 0x00 pad */
	assert_int_equal(sg_jwt_der_from_raw(raw, der), 2 + 3 + 35);
	assert_int_equal(sg_jwt_raw_from_der(der, 40, raw2), 0);
	assert_memory_equal(raw, raw2, 64);
}

static void test_cookie_take(void **state)
{
	static const struct { const char *hdr, *rest, *val; int found; } cases[] = {
		{ "sg_token=abc", "", "abc", 1 },
		{ "a=1; sg_token=abc; b=2", "a=1; b=2", "abc", 1 },
		{ " a=1 ;sg_token=abc ;  b=2 ; ", "a=1; b=2", "abc", 1 },
		{ "sg_token=first; x=y; sg_token=second", "x=y", "first", 1 },   /* every crumb goes */
		{ "xsg_token=1; sg_tokenx=2; SG_TOKEN=3", "xsg_token=1; sg_tokenx=2; SG_TOKEN=3", NULL, 0 },
		{ "flag; a=1", "flag; a=1", NULL, 0 },
		{ ";;;", "", NULL, 0 },
		{ "", "", NULL, 0 },
		{ "sg_token=", "", "", 1 },
	};
	char rest[64];
	size_t rl, vl;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *v = NULL;
		int r = sg_cookie_take(cases[i].hdr, strlen(cases[i].hdr), "sg_token", 8, &v, &vl, rest, sizeof(rest), &rl);

		assert_int_equal(r, cases[i].found);
		assert_string_equal(rest, cases[i].rest);
		assert_int_equal(rl, strlen(cases[i].rest));
		if (cases[i].val) {
			assert_int_equal(vl, strlen(cases[i].val));
			assert_memory_equal(v, cases[i].val, vl);
		}
	}
	/* rest too small: -1, never an overflow */
	assert_int_equal(sg_cookie_take("aaaa=1; bbbb=2", 14, "x", 1, NULL, &vl, rest, 8, &rl), -1);
}

static void test_key_file_errors(void **state)
{
	char dir[] = "/tmp/sgjwt-XXXXXX", path[128], pem[160], err[600];
	struct sg_jwt_keys *k;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(pem, sizeof(pem), "%s/a.pub.pem", dir);
	f = fopen(pem, "w");
	fputs(fuzz_pem, f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/keys", dir);
	f = fopen(path, "w");
	fputs("# comment\n\nk1 a.pub.pem\nk2 a.pub.pem   # same key, second id\n", f);
	fclose(f);
	k = sg_jwt_keys_load(path, err, sizeof(err));
	assert_non_null(k);
	assert_int_equal(sg_jwt_keys_count(k), 2);
	sg_jwt_keys_release(&k);
	f = fopen(path, "w");
	fputs("k1 a.pub.pem\nk1 a.pub.pem\n", f);
	fclose(f);
	assert_null(sg_jwt_keys_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, "keys:2: kid 'k1' listed twice"));
	f = fopen(path, "w");
	fputs("k1 a.pub.pem\nk/2 a.pub.pem\n", f);
	fclose(f);
	assert_null(sg_jwt_keys_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, "keys:2: bad kid"));
	f = fopen(path, "w");
	fputs("k1 keys\n", f);          /* not a PEM */
	fclose(f);
	assert_null(sg_jwt_keys_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, "keys:1: "));
	assert_non_null(strstr(err, "not a PEM public key"));
	unlink(pem);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify_outcomes),
		cmocka_unit_test(test_claims),
		cmocka_unit_test(test_b64url_and_der),
		cmocka_unit_test(test_cookie_take),
		cmocka_unit_test(test_key_file_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
