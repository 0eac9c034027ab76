/*
 * spop_varint.c — HAProxy's "peers" variable-length integer encoding.
 *
 * Not LEB128: the first byte carries values up to 239 alone; 240..255 mark
 * a continuation and carry the low 4 bits, every next byte carries 7 bits
 * added (with its high bit, which the encoder pre-subtracts) at the running
 * shift. A uint64 needs at most 10 bytes (negative integers are sent as
 * their two's complement, so -1 takes all 10).
 */
#include "spop.h"

/* Encodes v into out. Returns the bytes written (1..10) or -1 if room is
 * too small (out may then hold a partial encoding). */
int spop_varint_encode(uint64_t v, uint8_t *out, size_t room)
{
	size_t n = 0;

	if (room < 1)
		return -1;
	if (v < 240) {
		out[0] = (uint8_t)v;
		return 1;
	}
	out[n++] = (uint8_t)(v | 0xF0);
	v = (v - 240) >> 4;
	while (v >= 128) {
		if (n >= room)
			return -1;
		out[n++] = (uint8_t)(v | 0x80);
		v = (v - 128) >> 7;
	}
	if (n >= room)
		return -1;
	out[n++] = (uint8_t)v;
	return (int)n;
}

/* Returns the number of bytes spop_varint_encode() writes for v. */
int spop_varint_size(uint64_t v)
{
	int n = 1;

	if (v < 240)
		return 1;
	v = (v - 240) >> 4;
	while (v >= 128) {
		n++;
		v = (v - 128) >> 7;
	}
	return n + 1;
}

/* Decodes one varint from the len bytes at in. Returns the bytes consumed
 * and sets *v, or returns -1 (and leaves *v alone) when the input ends
 * inside the varint or the varint is longer than 10 bytes. Never reads
 * beyond in[len - 1]. */
int spop_varint_decode(const uint8_t *in, size_t len, uint64_t *v)
{
	uint64_t r;
	unsigned shift = 4;
	size_t n = 1;

	if (len < 1)
		return -1;
	r = in[0];
	if (r < 240) {
		*v = r;
		return 1;
	}
	for (;;) {
		uint8_t b;

		if (n >= len || n >= SPOP_VARINT_MAX)
			return -1;
		b = in[n++];
		/* shift reaches 60 at the 10th byte; higher bits wrap, as in HAProxy */
		r += (uint64_t)b << shift;
		shift += 7;
		if (b < 128)
			break;
	}
	*v = r;
	return (int)n;
}
