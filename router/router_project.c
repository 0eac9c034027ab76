/*
 * router_project.c — project ids: parsing, canonical text, the hash that
 * places them, and request-path classification.
 *
 * Everything here reads at most the length it is given (request paths come
 * straight from the network) and never allocates.
 */
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "router_int.h"

#define UUID_TEXT_LEN 36

/* Offset of the first digit of each id byte in the 8-4-4-4-12 text. */
static const uint8_t byte_off[16] = { 0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34 };

#define ONES 0x0101010101010101ull

static inline uint32_t load_le32(const char *s)
{
	uint32_t v;

	memcpy(&v, s, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

static inline void store_le32(uint8_t *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	memcpy(p, &v, 4);
}

/* Eight hex digits, first one in the low byte of c, into 4 bytes at out
 * (SWAR: all eight at once, no branch, no table). Returns the per-byte
 * validity bits: 0x80 in every byte when all eight are [0-9a-fA-F]. For
 * bytes below 0x80 the additions cannot carry into the next byte; a byte
 * at or above 0x80 fails on its own, whatever a carry does next to it. */
static inline uint64_t hex8(uint64_t c, uint8_t *out)
{
	uint64_t l = c | 0x20 * ONES;                      /* lower case ('0'-'9' unchanged) */
	uint64_t dig = (l + (0x80 - '0') * ONES) & ~(l + (0x7f - '9') * ONES) & c << 2; /* and c had 0x20 */
	uint64_t let = (l + (0x80 - 'a') * ONES) & ~(l + (0x7f - 'f') * ONES);
	uint64_t n = (l & 0x0f * ONES) + (l >> 6 & ONES) * 9;  /* nibble values */

	n = (n & 0x00ff00ff00ff00ffull) << 4 | (n >> 8 & 0x00ff00ff00ff00ffull);
	n = (n | n >> 8) & 0x0000ffff0000ffffull;
	store_le32(out, (uint32_t)(n | n >> 16));
	return (dig | let) & ~c & 0x80 * ONES;
}

/* Checks and decodes the 36 characters at s (the caller guarantees 36 are
 * readable). Fills id (even on failure) and, when canon is not NULL, the
 * canonical lower-case text and a NUL (meaningful only on success: valid
 * text is hex digits and dashes, and OR-ing 0x20 lower-cases the former
 * and keeps the latter). Returns true when s is a well-formed id. */
bool router_project_scan(const char *s, uint8_t id[16], char *canon)
{
	uint64_t ok;

	ok = hex8((uint64_t)load_le32(s + 4) << 32 | load_le32(s), id);
	ok &= hex8((uint64_t)load_le32(s + 14) << 32 | load_le32(s + 9), id + 4);
	ok &= hex8((uint64_t)load_le32(s + 24) << 32 | load_le32(s + 19), id + 8);
	ok &= hex8((uint64_t)load_le32(s + 32) << 32 | load_le32(s + 28), id + 12);
	if (canon) {
		for (unsigned i = 0; i < 32; i += 8) {
			uint64_t w;

			memcpy(&w, s + i, 8);
			w |= 0x20 * ONES;
			memcpy(canon + i, &w, 8);
		}
		store_le32((uint8_t *)canon + 32, load_le32(s + 32) | 0x20202020u);
		canon[UUID_TEXT_LEN] = '\0';
	}
	return ok == 0x80 * ONES && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-';
}

/* Parses exactly the RFC 4122 text form 8-4-4-4-12 (hex digits, either
 * case) from s[0..len). Returns 0 and fills id, or -1 (id untouched). */
int router_project_parse(const char *s, size_t len, uint8_t id[16])
{
	uint8_t tmp[16];

	if (len != UUID_TEXT_LEN || !router_project_scan(s, tmp, NULL))
		return -1;
	memcpy(id, tmp, 16);
	return 0;
}

/* Writes the canonical lower-case text form and a NUL into out[37]. */
void router_project_format(const uint8_t id[16], char out[37])
{
	static const char digits[] = "0123456789abcdef";

	for (unsigned i = 0; i < 16; i++) {
		out[byte_off[i]] = digits[id[i] >> 4];
		out[byte_off[i] + 1] = digits[id[i] & 15];
	}
	out[8] = out[13] = out[18] = out[23] = '-';
	out[UUID_TEXT_LEN] = '\0';
}

/* The 64-bit hash of a project id that everything places by: the top 32
 * bits are its position on every datacenter's ring, the low bits index the
 * pin table. XXH3 over the 16 id bytes: its output is fixed by the xxHash
 * specification and reads input as little-endian on every host, so every
 * proxy on every machine computes the same value (unlike hashing a struct or
 * a pointer); inlined, it costs a few nanoseconds for 16 bytes. */
uint64_t router_project_hash(const uint8_t id[16])
{
	return XXH3_64bits(id, 16);
}

/* True when path[0..len) is "/<uuid>", "/<uuid>/..." or "/<uuid>?...";
 * fills id (and canon, when not NULL, see router_project_scan). Reads at
 * most 38 bytes whatever the length. */
bool router_classify_scan(const char *path, size_t len, uint8_t id[16], char *canon)
{
	if (!path || len < 1 + UUID_TEXT_LEN || path[0] != '/')
		return false;
	if (len > 1 + UUID_TEXT_LEN && path[1 + UUID_TEXT_LEN] != '/' && path[1 + UUID_TEXT_LEN] != '?')
		return false;
	return router_project_scan(path + 1, id, canon);
}

/* True when path is "/<uuid>", "/<uuid>/..." or "/<uuid>?..." and fills id;
 * false otherwise (the request goes to the hubs; id untouched). */
bool router_classify_path(const char *path, size_t len, uint8_t id[16])
{
	uint8_t tmp[16];

	if (!router_classify_scan(path, len, tmp, NULL))
		return false;
	memcpy(id, tmp, 16);
	return true;
}
