/*
 * spop_hello.c — HELLO and DISCONNECT payloads (KV lists), and the agent's
 * side of the HELLO negotiation.
 */
#include <string.h>

#include "spop.h"

#define KEY_IS(kv, lit) ((kv)->name_len == sizeof(lit) - 1 && memcmp((kv)->name, lit, sizeof(lit) - 1) == 0)

/* True if d is an integer type; its value (negative ones as 0) in *u. */
static bool data_as_uint(const struct spop_data *d, uint64_t *u)
{
	switch (d->type) {
	case SPOP_DATA_UINT32:
	case SPOP_DATA_UINT64:
		*u = d->v.u;
		return true;
	case SPOP_DATA_INT32:
	case SPOP_DATA_INT64:
		*u = d->v.i < 0 ? 0 : (uint64_t)d->v.i;
		return true;
	default:
		return false;
	}
}

/* Decodes a HELLO KV list of either direction into *h. Unknown keys, and
 * known keys with an unexpected type, are ignored (parse tolerantly; the
 * negotiation then reports the missing field). Returns len or -1 when the
 * list itself is malformed. */
int spop_hello_decode(const uint8_t *payload, size_t len, struct spop_hello *h)
{
	struct spop_hello tmp;
	size_t off = 0;

	memset(&tmp, 0, sizeof(tmp));
	while (off < len) {
		struct spop_arg kv;
		uint64_t u;
		int n = spop_kv_decode(payload + off, len - off, &kv);

		if (n == -1)
			return -1;
		off += (size_t)n;
		if ((KEY_IS(&kv, "supported-versions") || KEY_IS(&kv, "version")) && kv.value.type == SPOP_DATA_STR) {
			tmp.has_version = true;
			tmp.version = kv.value.v.str.ptr;
			tmp.version_len = kv.value.v.str.len;
		} else if (KEY_IS(&kv, "max-frame-size") && data_as_uint(&kv.value, &u)) {
			tmp.has_max_frame_size = true;
			tmp.max_frame_size = u > UINT32_MAX ? UINT32_MAX : (uint32_t)u;
		} else if (KEY_IS(&kv, "capabilities") && kv.value.type == SPOP_DATA_STR) {
			tmp.has_capabilities = true;
			tmp.capabilities = kv.value.v.str.ptr;
			tmp.capabilities_len = kv.value.v.str.len;
		} else if (KEY_IS(&kv, "healthcheck") && kv.value.type == SPOP_DATA_BOOL) {
			tmp.healthcheck = kv.value.v.b;
		} else if (KEY_IS(&kv, "engine-id") && kv.value.type == SPOP_DATA_STR) {
			tmp.engine_id = kv.value.v.str.ptr;
			tmp.engine_id_len = kv.value.v.str.len;
		}
	}
	*h = tmp;
	return (int)len;
}

/* Decodes a DISCONNECT KV list into *d. Returns len or -1. */
int spop_disconnect_decode(const uint8_t *payload, size_t len, struct spop_disconnect *d)
{
	struct spop_disconnect tmp;
	size_t off = 0;

	memset(&tmp, 0, sizeof(tmp));
	while (off < len) {
		struct spop_arg kv;
		uint64_t u;
		int n = spop_kv_decode(payload + off, len - off, &kv);

		if (n == -1)
			return -1;
		off += (size_t)n;
		if (KEY_IS(&kv, "status-code") && data_as_uint(&kv.value, &u)) {
			tmp.has_status = true;
			tmp.status = u > UINT32_MAX ? UINT32_MAX : (uint32_t)u;
		} else if (KEY_IS(&kv, "message") && kv.value.type == SPOP_DATA_STR) {
			tmp.message = kv.value.v.str.ptr;
			tmp.message_len = kv.value.v.str.len;
		}
	}
	*d = tmp;
	return (int)len;
}

/* Appends the KV item name=d at out[*off]. Returns 0 or -1 (no room). */
static int put_kv(uint8_t *out, size_t room, size_t *off, const char *name, struct spop_data d)
{
	int n = spop_kv_encode(name, strlen(name), &d, out + *off, room - *off);

	if (n == -1)
		return -1;
	*off += (size_t)n;
	return 0;
}

/* Closes the frame of *off bytes at out: returns its size or -1. */
static int finish(uint8_t *out, size_t off)
{
	return spop_frame_end(out, off) == -1 ? -1 : (int)off;
}

/* Encodes a complete HAPROXY-HELLO frame as HAProxy sends it. engine_id may
 * be NULL. Returns the frame size or -1 when room is too small. */
int spop_haproxy_hello_encode(uint8_t *out, size_t room, uint32_t max_frame_size, const char *capabilities,
			      bool healthcheck, const char *engine_id)
{
	int n = spop_frame_begin(out, room, SPOP_FRAME_HAPROXY_HELLO, SPOP_FLAG_FIN, 0, 0);
	size_t off;

	if (n == -1)
		return -1;
	off = (size_t)n;
	if (put_kv(out, room, &off, "supported-versions", spop_data_str("2.0", 3)) == -1 ||
	    put_kv(out, room, &off, "max-frame-size", spop_data_uint32(max_frame_size)) == -1 ||
	    put_kv(out, room, &off, "capabilities", spop_data_str(capabilities, strlen(capabilities))) == -1)
		return -1;
	if (healthcheck && put_kv(out, room, &off, "healthcheck", spop_data_bool(true)) == -1)
		return -1;
	if (engine_id && put_kv(out, room, &off, "engine-id", spop_data_str(engine_id, strlen(engine_id))) == -1)
		return -1;
	return finish(out, off);
}

/* Encodes a complete AGENT-HELLO frame: version "2.0", max_frame_size and
 * capabilities (always present, possibly empty). Returns its size or -1. */
int spop_agent_hello_encode(uint8_t *out, size_t room, uint32_t max_frame_size, const char *capabilities)
{
	int n = spop_frame_begin(out, room, SPOP_FRAME_AGENT_HELLO, SPOP_FLAG_FIN, 0, 0);
	size_t off;

	if (n == -1)
		return -1;
	off = (size_t)n;
	if (put_kv(out, room, &off, "version", spop_data_str("2.0", 3)) == -1 ||
	    put_kv(out, room, &off, "max-frame-size", spop_data_uint32(max_frame_size)) == -1 ||
	    put_kv(out, room, &off, "capabilities", spop_data_str(capabilities, strlen(capabilities))) == -1)
		return -1;
	return finish(out, off);
}

/* Encodes a complete DISCONNECT frame of the given type with status-code
 * and message (NULL -> the status' text; cut at 255 bytes). Returns its
 * size or -1. */
int spop_disconnect_encode(uint8_t *out, size_t room, enum spop_frame_type type,
			   enum spop_status status, const char *message)
{
	int n = spop_frame_begin(out, room, type, SPOP_FLAG_FIN, 0, 0);
	size_t off, mlen;

	if (n == -1)
		return -1;
	off = (size_t)n;
	if (!message)
		message = spop_status_str(status);
	mlen = strlen(message);
	if (mlen > SPOP_DISCONNECT_MSG_MAX)
		mlen = SPOP_DISCONNECT_MSG_MAX;
	if (put_kv(out, room, &off, "status-code", spop_data_uint32((uint32_t)status)) == -1 ||
	    put_kv(out, room, &off, "message", spop_data_str(message, mlen)) == -1)
		return -1;
	return finish(out, off);
}

/* True if the comma-separated list (spaces around items allowed) holds a
 * version of major 2 written "2.<digits>". */
bool spop_version_supported(const char *list, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t s, e;

		while (i < len && (list[i] == ' ' || list[i] == '\t'))
			i++;
		s = i;
		while (i < len && list[i] != ',')
			i++;
		e = i;
		while (e > s && (list[e - 1] == ' ' || list[e - 1] == '\t'))
			e--;
		if (e - s >= 3 && list[s] == '2' && list[s + 1] == '.') {
			size_t k = s + 2;

			while (k < e && list[k] >= '0' && list[k] <= '9')
				k++;
			if (k == e)
				return true;
		}
		i++;    /* skip the comma */
	}
	return false;
}

/* Checks a decoded HAPROXY-HELLO against the agent's limit our_max (>= 256).
 * Returns SPOP_ST_NORMAL with *frame_size = min(our_max, HAProxy's), or the
 * status the agent must send in its AGENT-DISCONNECT. */
enum spop_status spop_hello_negotiate(const struct spop_hello *h, uint32_t our_max, uint32_t *frame_size)
{
	uint32_t sz;

	if (!h->has_version)
		return SPOP_ST_NO_VSN;
	if (!spop_version_supported(h->version, h->version_len))
		return SPOP_ST_BAD_VSN;
	if (!h->has_max_frame_size)
		return SPOP_ST_NO_FRAME_SIZE;
	if (!h->has_capabilities)
		return SPOP_ST_NO_CAP;
	sz = h->max_frame_size < our_max ? h->max_frame_size : our_max;
	if (sz < SPOP_MIN_FRAME_SIZE)
		return SPOP_ST_BAD_FRAME_SIZE;
	*frame_size = sz;
	return SPOP_ST_NORMAL;
}
