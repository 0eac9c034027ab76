/*
 * spop_ack.c — building the ACK of the current NOTIFY from a handler.
 *
 * The ACK is written in place in the connection's output buffer; each call
 * appends one action if it fits in the negotiated frame size.
 */
#include <string.h>

#include "spop_int.h"

/* Appends SET-VAR scope.name = *v. Returns 0, or -1 if it does not fit. */
int spop_ack_set_var_n(struct spop_ack *ack, enum spop_scope scope, const char *name, size_t name_len,
		       const struct spop_data *v)
{
	int n = spop_action_set_var_encode(scope, name, name_len, v, ack->frame + ack->len, ack->cap - ack->len);

	if (n == -1)
		return -1;
	ack->len += (size_t)n;
	return 0;
}

int spop_ack_set_var(struct spop_ack *ack, enum spop_scope scope, const char *name, const struct spop_data *v)
{
	return spop_ack_set_var_n(ack, scope, name, strlen(name), v);
}

/* Appends SET-VAR scope.name = the string val (len bytes). */
int spop_ack_set_str(struct spop_ack *ack, enum spop_scope scope, const char *name, const char *val, size_t len)
{
	struct spop_data d = spop_data_str(val, len);

	return spop_ack_set_var_n(ack, scope, name, strlen(name), &d);
}

/* Appends SET-VAR scope.name = the INT64 val. */
int spop_ack_set_int(struct spop_ack *ack, enum spop_scope scope, const char *name, int64_t val)
{
	struct spop_data d = spop_data_int64(val);

	return spop_ack_set_var_n(ack, scope, name, strlen(name), &d);
}

/* Appends UNSET-VAR scope.name. */
int spop_ack_unset_var(struct spop_ack *ack, enum spop_scope scope, const char *name)
{
	int n = spop_action_unset_var_encode(scope, name, strlen(name), ack->frame + ack->len, ack->cap - ack->len);

	if (n == -1)
		return -1;
	ack->len += (size_t)n;
	return 0;
}

/* Returns the first argument called name, or NULL. */
const struct spop_arg *spop_args_find(const struct spop_args *args, const char *name)
{
	size_t len = strlen(name);

	for (unsigned i = 0; i < args->count; i++)
		if (args->arg[i].name_len == len && memcmp(args->arg[i].name, name, len) == 0)
			return &args->arg[i];
	return NULL;
}
