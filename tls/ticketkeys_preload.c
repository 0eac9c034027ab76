/*
 * ticketkeys_preload.c — libsg-ticketkeys.so: give every SSL_CTX a process
 * makes the session-ticket keys of tls/ticket-keys.sh.
 *
 * hitch has no setting for ticket keys: each SSL_CTX it makes (at start,
 * and again on every SIGHUP reload) gets fresh random keys from OpenSSL,
 * so a restart or a certificate roll would turn every resumption into a
 * full handshake, unlike stunnel (ticketKeySecret) and HAProxy
 * (tls-ticket-keys). tls/hitch-run.sh starts hitch with
 *
 *   LD_PRELOAD=build/libsg-ticketkeys.so SG_TICKET_KEYS=RUN/ticket.keys
 *
 * and this library wraps SSL_CTX_new(): after OpenSSL made the context it
 * installs the keys read from that file (two lines of 64 hex digits:
 * encryption key, then MAC key; the 16-byte key name is the first half of
 * their SHA-256, so every process sharing the file names them alike). The
 * file is read on every SSL_CTX_new(), so a rotated file takes effect at the
 * next reload. A missing or malformed file makes SSL_CTX_new() fail with
 * the reason on stderr: hitch then refuses to start (or to reload) instead
 * of quietly running without resumption across restarts.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#define KEY_BYTES 32
#define NAME_BYTES 16

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method);

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One line of exactly 64 hex digits into out[32]; 0 on success. */
static int parse_line(FILE *f, unsigned char *out)
{
	char line[160];
	size_t n, i;

	if (!fgets(line, sizeof line, f))
		return -1;
	n = strcspn(line, "\r\n");
	if (n != 2 * KEY_BYTES)
		return -1;
	for (i = 0; i < KEY_BYTES; i++) {
		int hi = hexval(line[2 * i]), lo = hexval(line[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* OpenSSL's layout for SSL_CTX_set_tlsext_ticket_keys(): name, HMAC key,
 * AES key. Returns 0 when installed, -1 with a message on stderr. */
static int install_keys(SSL_CTX *ctx, const char *path)
{
	unsigned char aes[KEY_BYTES], mac[KEY_BYTES], both[2 * KEY_BYTES];
	unsigned char digest[EVP_MAX_MD_SIZE], keys[NAME_BYTES + 2 * KEY_BYTES];
	unsigned int dlen = 0;
	FILE *f = fopen(path, "r");
	int bad;

	if (!f) {
		fprintf(stderr, "libsg-ticketkeys: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	bad = parse_line(f, aes) || parse_line(f, mac);
	fclose(f);
	if (bad) {
		fprintf(stderr, "libsg-ticketkeys: %s: want two lines of 64 hex digits "
			"(tls/ticket-keys.sh makes it)\n", path);
		return -1;
	}
	memcpy(both, aes, KEY_BYTES);
	memcpy(both + KEY_BYTES, mac, KEY_BYTES);
	if (!EVP_Digest(both, sizeof both, digest, &dlen, EVP_sha256(), NULL) || dlen < NAME_BYTES) {
		fprintf(stderr, "libsg-ticketkeys: SHA-256 failed\n");
		return -1;
	}
	memcpy(keys, digest, NAME_BYTES);
	memcpy(keys + NAME_BYTES, mac, KEY_BYTES);
	memcpy(keys + NAME_BYTES + KEY_BYTES, aes, KEY_BYTES);
	if (SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof keys) != 1) {
		fprintf(stderr, "libsg-ticketkeys: OpenSSL refused the ticket keys\n");
		return -1;
	}
	OPENSSL_cleanse(keys, sizeof keys);
	OPENSSL_cleanse(both, sizeof both);
	OPENSSL_cleanse(aes, sizeof aes);
	OPENSSL_cleanse(mac, sizeof mac);
	return 0;
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method)
{
	static SSL_CTX *(*real)(const SSL_METHOD *);
	const char *path = getenv("SG_TICKET_KEYS");
	SSL_CTX *ctx;

	if (!real) {
		/* dlsym returns void *; POSIX guarantees the conversion. */
		*(void **)&real = dlsym(RTLD_NEXT, "SSL_CTX_new");
		if (!real) {
			fprintf(stderr, "libsg-ticketkeys: no SSL_CTX_new after this library: %s\n", dlerror());
			return NULL;
		}
	}
	ctx = real(method);
	if (!ctx || !path || !*path)
		return ctx;
	if (install_keys(ctx, path) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}
