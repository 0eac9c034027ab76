/*
 * spop_frame.c — frame length prefix and header.
 *
 *   <LEN:4 BE> <TYPE:1> <FLAGS:4 BE> <STREAM-ID:varint> <FRAME-ID:varint> <PAYLOAD>
 */
#include <string.h>

#include "spop.h"

static uint32_t read_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void write_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Reads the length prefix. Returns 4 and sets *frame_len, or -1 when fewer
 * than 4 bytes are available. The caller bounds *frame_len. */
int spop_frame_length(const uint8_t *in, size_t len, uint32_t *frame_len)
{
	if (len < 4)
		return -1;
	*frame_len = read_be32(in);
	return 4;
}

/* Decodes the header of a frame body of exactly len bytes (what follows the
 * length prefix). Returns len, with f->payload pointing at the rest of body,
 * or -1 when the header does not fit in len. The type byte is kept as is:
 * whether an unknown type is an error is the caller's decision. */
int spop_frame_decode(const uint8_t *body, size_t len, struct spop_frame *f)
{
	size_t off = 5;
	int n;

	if (len < 7 || len > INT32_MAX)
		return -1;
	f->type = (enum spop_frame_type)body[0];
	f->flags = read_be32(body + 1);
	n = spop_varint_decode(body + off, len - off, &f->stream_id);
	if (n == -1)
		return -1;
	off += (size_t)n;
	n = spop_varint_decode(body + off, len - off, &f->frame_id);
	if (n == -1)
		return -1;
	off += (size_t)n;
	f->payload = body + off;
	f->payload_len = len - off;
	return (int)len;
}

/* Writes a zero length prefix and the frame header into out. Returns the
 * bytes written, or -1 if room is too small. Finish with spop_frame_end(). */
int spop_frame_begin(uint8_t *out, size_t room, enum spop_frame_type type, uint32_t flags,
		     uint64_t stream_id, uint64_t frame_id)
{
	size_t off = 9;
	int n;

	if (room < 9)
		return -1;
	memset(out, 0, 4);
	out[4] = (uint8_t)type;
	write_be32(out + 5, flags);
	n = spop_varint_encode(stream_id, out + off, room - off);
	if (n == -1)
		return -1;
	off += (size_t)n;
	n = spop_varint_encode(frame_id, out + off, room - off);
	if (n == -1)
		return -1;
	return (int)(off + (size_t)n);
}

/* Sets the length prefix of the frame starting at `frame`, `total` bytes
 * long including the prefix. Returns 0, or -1 if total cannot hold a header
 * (a zero-length frame is never produced). */
int spop_frame_end(uint8_t *frame, size_t total)
{
	if (total < 4 + 7 || total - 4 > UINT32_MAX)
		return -1;
	write_be32(frame, (uint32_t)(total - 4));
	return 0;
}
