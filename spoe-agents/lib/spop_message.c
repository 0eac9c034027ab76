/*
 * spop_message.c — NOTIFY messages and ACK actions.
 *
 *   message    = <name> <NB-ARGS:1> <KV-LIST of NB-ARGS items>
 *   SET-VAR    = 01 03 <scope:1> <name> <typed value>
 *   UNSET-VAR  = 02 02 <scope:1> <name>
 */
#include <string.h>

#include "spop.h"

/* Decodes one message. Stores at most SPOP_MAX_ARGS arguments in args
 * (args->total counts all of them; the extra ones are validated and
 * skipped). Returns the bytes consumed or -1. */
int spop_message_decode(const uint8_t *in, size_t len, const char **name, size_t *name_len,
			struct spop_args *args)
{
	const char *nm;
	size_t nl, off;
	unsigned nargs;
	int n;

	n = spop_name_decode(in, len, &nm, &nl);
	if (n == -1)
		return -1;
	off = (size_t)n;
	if (off >= len)
		return -1;
	nargs = in[off++];
	args->count = 0;
	args->total = nargs;
	for (unsigned i = 0; i < nargs; i++) {
		struct spop_arg kv;

		n = spop_kv_decode(in + off, len - off, &kv);
		if (n == -1)
			return -1;
		off += (size_t)n;
		if (args->count < SPOP_MAX_ARGS)
			args->arg[args->count++] = kv;
	}
	*name = nm;
	*name_len = nl;
	return (int)off;
}

/* Encodes one message with nargs arguments (at most 255). Returns bytes
 * written or -1. */
int spop_message_encode(const char *name, size_t name_len, const struct spop_arg *args, unsigned nargs,
			uint8_t *out, size_t room)
{
	size_t off;
	int n;

	if (nargs > 255)
		return -1;
	n = spop_name_encode(name, name_len, out, room);
	if (n == -1 || (size_t)n >= room)
		return -1;
	off = (size_t)n;
	out[off++] = (uint8_t)nargs;
	for (unsigned i = 0; i < nargs; i++) {
		n = spop_kv_encode(args[i].name, args[i].name_len, &args[i].value, out + off, room - off);
		if (n == -1)
			return -1;
		off += (size_t)n;
	}
	return (int)off;
}

/* Encodes a SET-VAR action. Returns bytes written or -1. */
int spop_action_set_var_encode(enum spop_scope scope, const char *name, size_t name_len,
			       const struct spop_data *v, uint8_t *out, size_t room)
{
	int n, m;

	if (room < 3)
		return -1;
	out[0] = SPOP_ACT_SET_VAR;
	out[1] = 3;
	out[2] = (uint8_t)scope;
	n = spop_name_encode(name, name_len, out + 3, room - 3);
	if (n == -1)
		return -1;
	m = spop_data_encode(v, out + 3 + n, room - 3 - (size_t)n);
	return m == -1 ? -1 : 3 + n + m;
}

/* Encodes an UNSET-VAR action. Returns bytes written or -1. */
int spop_action_unset_var_encode(enum spop_scope scope, const char *name, size_t name_len,
				 uint8_t *out, size_t room)
{
	int n;

	if (room < 3)
		return -1;
	out[0] = SPOP_ACT_UNSET_VAR;
	out[1] = 2;
	out[2] = (uint8_t)scope;
	n = spop_name_encode(name, name_len, out + 3, room - 3);
	return n == -1 ? -1 : 3 + n;
}

/* Decodes one action. Only SET-VAR (3 args) and UNSET-VAR (2 args) with a
 * scope in [0, 4] are accepted. Returns the bytes consumed or -1. */
int spop_action_decode(const uint8_t *in, size_t len, struct spop_action *act)
{
	struct spop_action tmp;
	size_t off = 3;
	int n;

	if (len < 3)
		return -1;
	memset(&tmp, 0, sizeof(tmp));
	if (in[0] == SPOP_ACT_SET_VAR && in[1] == 3)
		tmp.type = SPOP_ACT_SET_VAR;
	else if (in[0] == SPOP_ACT_UNSET_VAR && in[1] == 2)
		tmp.type = SPOP_ACT_UNSET_VAR;
	else
		return -1;
	if (in[2] > SPOP_SCOPE_RES)
		return -1;
	tmp.scope = (enum spop_scope)in[2];
	n = spop_name_decode(in + off, len - off, &tmp.name, &tmp.name_len);
	if (n == -1)
		return -1;
	off += (size_t)n;
	if (tmp.type == SPOP_ACT_SET_VAR) {
		n = spop_data_decode(in + off, len - off, &tmp.value);
		if (n == -1)
			return -1;
		off += (size_t)n;
	}
	*act = tmp;
	return (int)off;
}
