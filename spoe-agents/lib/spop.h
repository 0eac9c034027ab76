/*
 * spop.h — SPOP 2.0 codec (HAProxy's Stream Processing Offload Protocol).
 *
 * Pure functions over caller-owned byte buffers: no allocation, no I/O, no
 * logging. Usable from both sides of the protocol: an agent decodes
 * HAPROXY-HELLO/NOTIFY/HAPROXY-DISCONNECT and encodes AGENT-HELLO/ACK/
 * AGENT-DISCONNECT; a client playing HAProxy's part (load generator, tests)
 * does the reverse with the same functions.
 *
 * Conventions:
 *   - decoders take (in, len) and return the bytes consumed, or -1 when the
 *     input is malformed or short; on -1 nothing in *out is meaningful and
 *     the caller's cursor must not move. Strings and binaries returned by a
 *     decoder point INTO the input buffer (decoded in place, not copied).
 *   - encoders take (out, room) and return the bytes written, or -1 when the
 *     value does not fit (nothing useful is written then).
 *
 * Frame layout on the wire:
 *   <LEN:4 BE, excludes itself> <TYPE:1> <FLAGS:4 BE> <STREAM-ID:varint>
 *   <FRAME-ID:varint> <PAYLOAD>
 *
 * Building a frame: spop_frame_begin() writes the length placeholder and the
 * header, the caller appends the payload with the encoders below (KV items,
 * messages, actions), then spop_frame_end() patches the length.
 */
#ifndef SPOP_H
#define SPOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPOP_MAX_ARGS            16       /* arguments kept per message; extra ones are skipped */
#define SPOP_DEFAULT_FRAME_SIZE  16380u   /* HAProxy's default max-frame-size */
#define SPOP_MIN_FRAME_SIZE      256u     /* smallest max-frame-size an agent may announce */
#define SPOP_FRAME_HDR_MAX       (4 + 1 + 4 + 10 + 10) /* length prefix + largest header */
#define SPOP_VARINT_MAX          10       /* bytes of the longest varint (uint64) */
#define SPOP_DISCONNECT_MSG_MAX  255      /* longest DISCONNECT message HAProxy keeps */

#define SPOP_FLAG_FIN            0x00000001u
#define SPOP_FLAG_ABORT          0x00000002u

enum spop_frame_type {
	SPOP_FRAME_UNSET = 0,
	SPOP_FRAME_HAPROXY_HELLO = 1,
	SPOP_FRAME_HAPROXY_DISCONNECT = 2,
	SPOP_FRAME_NOTIFY = 3,
	SPOP_FRAME_AGENT_HELLO = 101,
	SPOP_FRAME_AGENT_DISCONNECT = 102,
	SPOP_FRAME_ACK = 103,
};

enum spop_status {
	SPOP_ST_NORMAL = 0,
	SPOP_ST_IO = 1,
	SPOP_ST_TIMEOUT = 2,
	SPOP_ST_TOO_BIG = 3,
	SPOP_ST_INVALID = 4,
	SPOP_ST_NO_VSN = 5,
	SPOP_ST_NO_FRAME_SIZE = 6,
	SPOP_ST_NO_CAP = 7,
	SPOP_ST_BAD_VSN = 8,
	SPOP_ST_BAD_FRAME_SIZE = 9,
	SPOP_ST_FRAG_NOT_SUPPORTED = 10,
	SPOP_ST_INTERLACED_FRAMES = 11,
	SPOP_ST_FRAMEID_NOTFOUND = 12,
	SPOP_ST_RES_ALLOC = 13,
	SPOP_ST_UNKNOWN = 99,
};

enum spop_data_type {
	SPOP_DATA_NULL = 0,
	SPOP_DATA_BOOL,
	SPOP_DATA_INT32,
	SPOP_DATA_UINT32,
	SPOP_DATA_INT64,
	SPOP_DATA_UINT64,
	SPOP_DATA_IPV4,
	SPOP_DATA_IPV6,
	SPOP_DATA_STR,
	SPOP_DATA_BIN,
};

enum spop_scope {
	SPOP_SCOPE_PROC = 0,
	SPOP_SCOPE_SESS,
	SPOP_SCOPE_TXN,
	SPOP_SCOPE_REQ,
	SPOP_SCOPE_RES,
};

enum spop_action_type {
	SPOP_ACT_SET_VAR = 1,
	SPOP_ACT_UNSET_VAR = 2,
};

/* One typed value. INT32/INT64 use v.i, UINT32/UINT64 use v.u, STR and BIN
 * use v.str (not NUL-terminated; points into the decoded buffer). */
struct spop_data {
	enum spop_data_type type;
	union {
		bool b;
		int64_t i;
		uint64_t u;
		uint8_t ipv4[4];
		uint8_t ipv6[16];
		struct { const char *ptr; size_t len; } str;
	} v;
};

/* A KV item: a message argument or a HELLO/DISCONNECT field. */
struct spop_arg {
	const char *name;
	size_t name_len;
	struct spop_data value;
};

struct spop_args {
	unsigned count;                 /* arguments stored in arg[] (<= SPOP_MAX_ARGS) */
	unsigned total;                 /* arguments the message carried (may exceed count) */
	struct spop_arg arg[SPOP_MAX_ARGS];
};

/* A decoded frame; payload points into the decoded buffer. */
struct spop_frame {
	enum spop_frame_type type;      /* raw type byte (unknown values kept) */
	uint32_t flags;
	uint64_t stream_id;
	uint64_t frame_id;
	const uint8_t *payload;
	size_t payload_len;
};

/* HELLO fields, both directions: `version` holds "supported-versions" of a
 * HAPROXY-HELLO or "version" of an AGENT-HELLO. */
struct spop_hello {
	bool has_version, has_max_frame_size, has_capabilities, healthcheck;
	const char *version;       size_t version_len;
	uint32_t max_frame_size;
	const char *capabilities;  size_t capabilities_len;
	const char *engine_id;     size_t engine_id_len;    /* NULL if absent */
};

struct spop_disconnect {
	bool has_status;
	uint32_t status;
	const char *message;       size_t message_len;      /* NULL if absent */
};

/* A decoded ACK action. value is meaningful for SET-VAR only. */
struct spop_action {
	enum spop_action_type type;
	enum spop_scope scope;
	const char *name;          size_t name_len;
	struct spop_data value;
};

/* --- varint (HAProxy "peers" encoding, not LEB128) ---------------------- */
int spop_varint_encode(uint64_t v, uint8_t *out, size_t room);      /* bytes written, -1 no room */
int spop_varint_decode(const uint8_t *in, size_t len, uint64_t *v); /* bytes consumed, -1 bad/short */
int spop_varint_size(uint64_t v);                                   /* bytes spop_varint_encode writes */

const char *spop_status_str(enum spop_status st);   /* "normal", "frame too big", ...; never NULL */
const char *spop_frame_type_str(unsigned type);      /* "NOTIFY", ...; "unknown" */

/* --- frames ------------------------------------------------------------- */
/* Reads the 4-byte big-endian length prefix: 4 and *frame_len, or -1 if fewer than 4 bytes. */
int spop_frame_length(const uint8_t *in, size_t len, uint32_t *frame_len);
/* Decodes one frame body (the frame_len bytes after the length prefix):
 * returns len (all of it) or -1 when the header is malformed. */
int spop_frame_decode(const uint8_t *body, size_t len, struct spop_frame *f);
/* Writes the length placeholder and the header; returns the bytes written. */
int spop_frame_begin(uint8_t *out, size_t room, enum spop_frame_type type, uint32_t flags,
		     uint64_t stream_id, uint64_t frame_id);
/* Patches the length prefix of the frame at `frame` that is `total` bytes
 * long (prefix included). Returns 0, or -1 if total cannot hold a header. */
int spop_frame_end(uint8_t *frame, size_t total);

/* --- typed data, names, KV ---------------------------------------------- */
int spop_data_encode(const struct spop_data *d, uint8_t *out, size_t room);
int spop_data_decode(const uint8_t *in, size_t len, struct spop_data *d);
int spop_name_encode(const char *name, size_t name_len, uint8_t *out, size_t room);
int spop_name_decode(const uint8_t *in, size_t len, const char **name, size_t *name_len);
int spop_kv_encode(const char *name, size_t name_len, const struct spop_data *d, uint8_t *out, size_t room);
int spop_kv_decode(const uint8_t *in, size_t len, struct spop_arg *kv);
/* Convenience for the common value types. */
struct spop_data spop_data_str(const char *s, size_t len);
struct spop_data spop_data_uint32(uint32_t u);
struct spop_data spop_data_bool(bool b);
struct spop_data spop_data_int64(int64_t i);

/* --- messages (NOTIFY payload) ------------------------------------------ */
/* One message: <name> <nb-args:1> <KV list>. args->count is capped at
 * SPOP_MAX_ARGS (the rest is validated and skipped; args->total counts all). */
int spop_message_decode(const uint8_t *in, size_t len, const char **name, size_t *name_len,
			struct spop_args *args);
int spop_message_encode(const char *name, size_t name_len, const struct spop_arg *args, unsigned nargs,
			uint8_t *out, size_t room);

/* --- actions (ACK payload) ---------------------------------------------- */
int spop_action_set_var_encode(enum spop_scope scope, const char *name, size_t name_len,
			       const struct spop_data *v, uint8_t *out, size_t room);
int spop_action_unset_var_encode(enum spop_scope scope, const char *name, size_t name_len,
				 uint8_t *out, size_t room);
int spop_action_decode(const uint8_t *in, size_t len, struct spop_action *act);

/* --- HELLO and DISCONNECT payloads -------------------------------------- */
/* Decodes a HELLO KV list (either side); unknown keys are ignored. Returns len or -1. */
int spop_hello_decode(const uint8_t *payload, size_t len, struct spop_hello *h);
/* Decodes a DISCONNECT KV list (either side). Returns len or -1. */
int spop_disconnect_decode(const uint8_t *payload, size_t len, struct spop_disconnect *d);

/* Complete frames (length prefix included); return bytes written or -1. */
int spop_haproxy_hello_encode(uint8_t *out, size_t room, uint32_t max_frame_size, const char *capabilities,
			      bool healthcheck, const char *engine_id);
int spop_agent_hello_encode(uint8_t *out, size_t room, uint32_t max_frame_size, const char *capabilities);
int spop_disconnect_encode(uint8_t *out, size_t room, enum spop_frame_type type /* HAPROXY_ or AGENT_DISCONNECT */,
			   enum spop_status status, const char *message);

/* Agent-side negotiation of a decoded HAPROXY-HELLO. `our_max` is the
 * agent's own limit. On success returns SPOP_ST_NORMAL and sets
 * *frame_size = min(our_max, HAProxy's). Otherwise the status to send in the
 * AGENT-DISCONNECT (5 no version, 6 no max-frame-size, 7 no capabilities,
 * 8 unsupported version, 9 max-frame-size out of range). */
enum spop_status spop_hello_negotiate(const struct spop_hello *h, uint32_t our_max, uint32_t *frame_size);
/* True if the comma-separated version list names a 2.x version. */
bool spop_version_supported(const char *list, size_t len);

#endif /* SPOP_H */
