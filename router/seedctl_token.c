/*
 * seedctl token — mint a project access token (ES256 JWT) with a private
 * key, for the hubs' developers and for tests (docs/access-control.md).
 *
 * The hubs issue tokens the same way after checking that the user
 * collaborates on the projects: header {"alg":"ES256","kid":...,"typ":"JWT"},
 * claims {"sub":USER,"prj":[UUID...],"iat":NOW,"exp":NOW+TTL}, signed with
 * ECDSA P-256 / SHA-256, the signature as raw r||s (JWS), not DER.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/sg_jwt.h"
#include "seedctl.h"

static void token_usage(FILE *f)
{
	fprintf(f, "usage: seedctl token --key PRIVATE.pem [--kid ID] --user NAME --project UUID\n"
	        "                     [--project UUID...] [--ttl SECONDS] [--now UNIXTIME] [--count N]\n"
	        "Prints an ES256 JWT granting NAME access to the projects, valid TTL seconds.\n"
	        "route-agent --auth-keys checks it (the public key listed under the same kid).\n"
	        "  --key FILE      EC P-256 private key, PEM (openssl ecparam -name prime256v1 -genkey)\n"
	        "  --kid ID        key id in the token header (default: the key file's name up to\n"
	        "                  its first '.', e.g. demo-1 for demo-1.key.pem)\n"
	        "  --user NAME     the user (claim sub): 1-%d visible ASCII characters\n"
	        "  --project UUID  a project the token grants (claim prj), repeatable, at most %d\n"
	        "  --ttl SECONDS   lifetime (claim exp = now + TTL; default 3600)\n"
	        "  --now UNIXTIME  issue time instead of the clock (tests: expired tokens)\n"
	        "  --count N       print N tokens, one a line: the same claims, each signature\n"
	        "                  differs (benchmarks: every request a new token)\n",
	        SG_JWT_USER_MAX, SG_JWT_PROJECTS_MAX);
}

/* The default kid: the key file's base name up to its first '.'. */
static void default_kid(const char *path, char *out, size_t len)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	snprintf(out, len, "%.*s", (int)strcspn(base, "."), base);
}

static EVP_PKEY *load_private(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *pkey;

	if (!f) {
		fprintf(stderr, "seedctl token: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!pkey) {
		fprintf(stderr, "seedctl token: %s: not a PEM private key\n", path);
		return NULL;
	}
	if (!sg_jwt_is_p256(pkey)) {
		fprintf(stderr, "seedctl token: %s: not an EC P-256 key (ES256 needs prime256v1)\n", path);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

/* base64url(json) appended at out+*off. */
static int put_b64(const char *s, size_t len, char *out, size_t room, size_t *off)
{
	size_t n = sg_b64url_encode((const uint8_t *)s, len, out + *off, room - *off);

	if (!n && len)
		return -1;
	*off += n;
	return 0;
}

/* Signs header.claims and prints the token. */
static int mint(EVP_PKEY *pkey, const char *kid, const char *claims)
{
	char header[160], tok[2 * SG_JWT_TOKEN_MAX];
	uint8_t der[80], raw[64];
	size_t off = 0, der_len = sizeof(der);
	EVP_MD_CTX *ctx;
	int ok;

	snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", kid);
	if (put_b64(header, strlen(header), tok, sizeof(tok), &off) == -1 || off + 1 >= sizeof(tok))
		return -1;
	tok[off++] = '.';
	if (put_b64(claims, strlen(claims), tok, sizeof(tok), &off) == -1)
		return -1;
	ctx = EVP_MD_CTX_new();
	ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	     EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)tok, off) == 1 &&
	     sg_jwt_raw_from_der(der, der_len, raw) == 0;
	EVP_MD_CTX_free(ctx);
	if (!ok || off + 1 >= sizeof(tok)) {
		fprintf(stderr, "seedctl token: signing failed\n");
		return -1;
	}
	tok[off++] = '.';
	if (!sg_b64url_encode(raw, sizeof(raw), tok + off, sizeof(tok) - off))
		return -1;
	if (strlen(tok) > SG_JWT_TOKEN_MAX) {
		fprintf(stderr, "seedctl token: the token would exceed %d bytes\n", SG_JWT_TOKEN_MAX);
		return -1;
	}
	printf("%s\n", tok);
	return 0;
}

int seedctl_token(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' }, { "kid", required_argument, NULL, 'i' },
		{ "user", required_argument, NULL, 'u' }, { "project", required_argument, NULL, 'p' },
		{ "ttl", required_argument, NULL, 't' }, { "now", required_argument, NULL, 'n' },
		{ "count", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	const char *key = NULL, *kid = NULL, *user = NULL, *projects[SG_JWT_PROJECTS_MAX];
	char kidbuf[SG_JWT_KID_MAX + 2], *end;
	unsigned nproj = 0;
	long long ttl = 3600, now = (long long)time(NULL), count = 1;
	json_object *claims, *prj;
	EVP_PKEY *pkey;
	uint8_t id[16];
	int c, rc;

	while ((c = getopt_long(argc, argv, "k:i:u:p:t:n:c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key = optarg; break;
		case 'i': kid = optarg; break;
		case 'u': user = optarg; break;
		case 'p':
			if (nproj == SG_JWT_PROJECTS_MAX) {
				fprintf(stderr, "seedctl token: at most %d --project\n", SG_JWT_PROJECTS_MAX);
				return 2;
			}
			if (router_project_parse(optarg, strlen(optarg), id) != 0) {
				fprintf(stderr, "seedctl token: --project: '%s' is not a project id (UUID)\n", optarg);
				return 2;
			}
			projects[nproj++] = optarg;
			break;
		case 't':
		case 'n':
			errno = 0;
			*(c == 't' ? &ttl : &now) = strtoll(optarg, &end, 10);
			if (errno || end == optarg || *end || (c == 't' && ttl < 1) || (c == 'n' && now < 0)) {
				fprintf(stderr, "seedctl token: --%s: expected %s, got '%s'\n", c == 't' ? "ttl" : "now",
				        c == 't' ? "seconds >= 1" : "a unix time", optarg);
				return 2;
			}
			break;
		case 'c':
			errno = 0;
			count = strtoll(optarg, &end, 10);
			if (errno || end == optarg || *end || count < 1 || count > 10000000) {
				fprintf(stderr, "seedctl token: --count: expected 1..10000000, got '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h':
			token_usage(stdout);
			return 0;
		default:
			token_usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !key || !user || nproj == 0) {
		fprintf(stderr, "seedctl token: --key, --user and at least one --project are required\n");
		token_usage(stderr);
		return 2;
	}
	if (strlen(user) == 0 || strlen(user) > SG_JWT_USER_MAX || strpbrk(user, " \t\r\n")) {
		fprintf(stderr, "seedctl token: --user: 1-%d visible ASCII characters\n", SG_JWT_USER_MAX);
		return 2;
	}
	for (const char *p = user; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			fprintf(stderr, "seedctl token: --user: 1-%d visible ASCII characters\n", SG_JWT_USER_MAX);
			return 2;
		}
	if (!kid) {
		default_kid(key, kidbuf, sizeof(kidbuf));
		kid = kidbuf;
	}
	if (strlen(kid) == 0 || strlen(kid) > SG_JWT_KID_MAX || strspn(kid,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(kid)) {
		fprintf(stderr, "seedctl token: kid '%s': 1-%d of [A-Za-z0-9._-] (--kid)\n", kid, SG_JWT_KID_MAX);
		return 2;
	}
	pkey = load_private(key);
	if (!pkey)
		return 1;
	claims = json_object_new_object();
	prj = json_object_new_array();
	for (unsigned i = 0; i < nproj; i++) {
		char canon[37];

		router_project_parse(projects[i], strlen(projects[i]), id);
		router_project_format(id, canon);
		json_object_array_add(prj, json_object_new_string(canon));
	}
	json_object_object_add(claims, "sub", json_object_new_string(user));
	json_object_object_add(claims, "prj", prj);
	json_object_object_add(claims, "iat", json_object_new_int64(now));
	json_object_object_add(claims, "exp", json_object_new_int64(now + ttl));
	rc = 0;
	for (long long i = 0; i < count && rc == 0; i++)
		rc = mint(pkey, kid, json_object_to_json_string_ext(claims, JSON_C_TO_STRING_PLAIN |
								     JSON_C_TO_STRING_NOSLASHESCAPE)) == 0 ? 0 : 1;
	json_object_put(claims);
	EVP_PKEY_free(pkey);
	return rc;
}
