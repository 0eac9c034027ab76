/*
 * sd_b64.c — base64 (RFC 4648 alphabet, with padding), etcd's JSON
 * gateway's encoding of keys and values (see sd_b64.h).
 */
#include "sd_b64.h"

#include <stdlib.h>
#include <string.h>

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* See sd_b64.h. */
char *sd_b64_encode(const char *in, size_t len)
{
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
	const unsigned char *p = (const unsigned char *)in;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0) |
			     (i + 2 < len ? p[i + 2] : 0);

		*o++ = b64chars[v >> 18 & 63];
		*o++ = b64chars[v >> 12 & 63];
		*o++ = i + 1 < len ? b64chars[v >> 6 & 63] : '=';
		*o++ = i + 2 < len ? b64chars[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/* See sd_b64.h. */
int sd_b64_decode(const char *in, size_t len, char *out, size_t *outlen)
{
	unsigned acc = 0, bits = 0;
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		const char *c;

		if (in[i] == '=')
			break;
		c = in[i] ? strchr(b64chars, in[i]) : NULL;
		if (!c)
			return -1;
		acc = acc << 6 | (unsigned)(c - b64chars);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (char)(acc >> bits & 0xFF);
		}
	}
	*outlen = n;
	return 0;
}
