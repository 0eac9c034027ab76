/*
 * spop_data.c — typed data, names and KV items.
 *
 * A typed value starts with one byte: type in the LOW nibble, flags in the
 * HIGH nibble (BOOL keeps its value in flag bit 0: true = 0x11, false =
 * 0x01). Integers are varints, IPv4/IPv6 raw bytes, STRING/BINARY a varint
 * length then the bytes. Names (KV, message and variable names) are a varint
 * length and bytes with no type byte.
 */
#include <string.h>

#include "spop.h"

#define SPOP_DATA_FL_TRUE 0x10

/* Decodes a varint length followed by that many bytes. Returns the bytes
 * consumed, or -1 when the length runs past the input. */
static int bytes_decode(const uint8_t *in, size_t len, const char **ptr, size_t *plen)
{
	uint64_t sz;
	int n = spop_varint_decode(in, len, &sz);

	if (n == -1 || sz > len - (size_t)n)
		return -1;
	*ptr = (const char *)(in + n);
	*plen = (size_t)sz;
	return n + (int)sz;
}

/* Encodes a varint length and the bytes. Returns bytes written or -1. */
static int bytes_encode(const char *ptr, size_t plen, uint8_t *out, size_t room)
{
	int n = spop_varint_encode(plen, out, room);

	if (n == -1 || plen > room - (size_t)n || plen > INT32_MAX - SPOP_VARINT_MAX)
		return -1;
	if (plen)
		memcpy(out + n, ptr, plen);
	return n + (int)plen;
}

/* Encodes the typed value d. Returns the bytes written, or -1 if it does
 * not fit or d->type is not a SPOP type. */
int spop_data_encode(const struct spop_data *d, uint8_t *out, size_t room)
{
	int n;

	if (room < 1)
		return -1;
	switch (d->type) {
	case SPOP_DATA_NULL:
		out[0] = SPOP_DATA_NULL;
		return 1;
	case SPOP_DATA_BOOL:
		out[0] = SPOP_DATA_BOOL | (d->v.b ? SPOP_DATA_FL_TRUE : 0);
		return 1;
	case SPOP_DATA_INT32:
	case SPOP_DATA_INT64:
		out[0] = (uint8_t)d->type;
		n = spop_varint_encode((uint64_t)d->v.i, out + 1, room - 1);
		return n == -1 ? -1 : n + 1;
	case SPOP_DATA_UINT32:
	case SPOP_DATA_UINT64:
		out[0] = (uint8_t)d->type;
		n = spop_varint_encode(d->v.u, out + 1, room - 1);
		return n == -1 ? -1 : n + 1;
	case SPOP_DATA_IPV4:
		if (room < 5)
			return -1;
		out[0] = SPOP_DATA_IPV4;
		memcpy(out + 1, d->v.ipv4, 4);
		return 5;
	case SPOP_DATA_IPV6:
		if (room < 17)
			return -1;
		out[0] = SPOP_DATA_IPV6;
		memcpy(out + 1, d->v.ipv6, 16);
		return 17;
	case SPOP_DATA_STR:
	case SPOP_DATA_BIN:
		out[0] = (uint8_t)d->type;
		n = bytes_encode(d->v.str.ptr, d->v.str.len, out + 1, room - 1);
		return n == -1 ? -1 : n + 1;
	}
	return -1;
}

/* Decodes one typed value; strings point into in. Returns the bytes
 * consumed, or -1 on an unknown type or a value running past the input. */
int spop_data_decode(const uint8_t *in, size_t len, struct spop_data *d)
{
	struct spop_data tmp;
	uint64_t u;
	int n;

	if (len < 1)
		return -1;
	memset(&tmp, 0, sizeof(tmp));
	tmp.type = (enum spop_data_type)(in[0] & 0x0F);
	switch (tmp.type) {
	case SPOP_DATA_NULL:
		n = 0;
		break;
	case SPOP_DATA_BOOL:
		tmp.v.b = (in[0] & SPOP_DATA_FL_TRUE) != 0;
		n = 0;
		break;
	case SPOP_DATA_INT32:
	case SPOP_DATA_INT64:
	case SPOP_DATA_UINT32:
	case SPOP_DATA_UINT64:
		n = spop_varint_decode(in + 1, len - 1, &u);
		if (n == -1)
			return -1;
		if (tmp.type == SPOP_DATA_INT32 || tmp.type == SPOP_DATA_INT64)
			tmp.v.i = (int64_t)u;
		else
			tmp.v.u = u;
		break;
	case SPOP_DATA_IPV4:
		if (len < 5)
			return -1;
		memcpy(tmp.v.ipv4, in + 1, 4);
		n = 4;
		break;
	case SPOP_DATA_IPV6:
		if (len < 17)
			return -1;
		memcpy(tmp.v.ipv6, in + 1, 16);
		n = 16;
		break;
	case SPOP_DATA_STR:
	case SPOP_DATA_BIN:
		n = bytes_decode(in + 1, len - 1, &tmp.v.str.ptr, &tmp.v.str.len);
		if (n == -1)
			return -1;
		break;
	default:
		return -1;
	}
	*d = tmp;
	return n + 1;
}

/* Encodes a name (no type byte). Returns bytes written or -1. */
int spop_name_encode(const char *name, size_t name_len, uint8_t *out, size_t room)
{
	return bytes_encode(name, name_len, out, room);
}

/* Decodes a name (no type byte); *name points into in. Returns the bytes
 * consumed or -1. */
int spop_name_decode(const uint8_t *in, size_t len, const char **name, size_t *name_len)
{
	const char *p;
	size_t l;
	int n = bytes_decode(in, len, &p, &l);

	if (n == -1)
		return -1;
	*name = p;
	*name_len = l;
	return n;
}

/* Encodes one KV item: name then typed value. Returns bytes written or -1. */
int spop_kv_encode(const char *name, size_t name_len, const struct spop_data *d, uint8_t *out, size_t room)
{
	int n = spop_name_encode(name, name_len, out, room);
	int m;

	if (n == -1)
		return -1;
	m = spop_data_encode(d, out + n, room - (size_t)n);
	return m == -1 ? -1 : n + m;
}

/* Decodes one KV item into *kv. Returns the bytes consumed or -1. */
int spop_kv_decode(const uint8_t *in, size_t len, struct spop_arg *kv)
{
	struct spop_arg tmp;
	int n = spop_name_decode(in, len, &tmp.name, &tmp.name_len);
	int m;

	if (n == -1)
		return -1;
	m = spop_data_decode(in + n, len - (size_t)n, &tmp.value);
	if (m == -1)
		return -1;
	*kv = tmp;
	return n + m;
}

struct spop_data spop_data_str(const char *s, size_t len)
{
	struct spop_data d = { .type = SPOP_DATA_STR };

	d.v.str.ptr = s;
	d.v.str.len = len;
	return d;
}

struct spop_data spop_data_uint32(uint32_t u)
{
	struct spop_data d = { .type = SPOP_DATA_UINT32 };

	d.v.u = u;
	return d;
}

struct spop_data spop_data_bool(bool b)
{
	struct spop_data d = { .type = SPOP_DATA_BOOL };

	d.v.b = b;
	return d;
}

struct spop_data spop_data_int64(int64_t i)
{
	struct spop_data d = { .type = SPOP_DATA_INT64 };

	d.v.i = i;
	return d;
}
