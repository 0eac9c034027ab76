/*
 * sd_curl.h — seedctl's blocking etcd v3 client (the JSON gateway, over
 * libcurl's easy interface). A CLI makes a handful of requests and waits
 * for each, so nothing here is asynchronous; the daemons use their own
 * event-driven client.
 *
 * Every call tries the spec's endpoints in turn, starting with the one that
 * answered last: an endpoint that cannot be reached, or that answers
 * "unavailable" (no leader, leader changed), gives way to the next. A
 * transaction is only retried elsewhere when the request cannot have been
 * applied (no connection was made, or etcd said unavailable), so a guarded
 * write never runs twice. Errors name the endpoint:
 * "etcd at 127.0.0.2:2379: connection refused".
 *
 * Link with $(SEEDDIR_LIBS) (libcurl, json-c).
 */
#ifndef SEEDGATE_SD_CURL_H
#define SEEDGATE_SD_CURL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "seeddir.h"

#define SD_TXN_MAX_OPS 128          /* etcd's default --max-txn-ops */

struct sd_etcd;

/* timeout_ms bounds each request on one endpoint (connect: the smaller of
 * it and 2 s). NULL + err when libcurl cannot start. */
struct sd_etcd *sd_etcd_open(const struct sd_etcd_spec *spec, unsigned timeout_ms, char *err, size_t errlen);
void sd_etcd_close(struct sd_etcd **c);

/* The result of a range read: records (sd_build takes them as they are)
 * plus each key's metadata, at one revision. */
struct sd_kv_meta {
	int64_t create_revision, mod_revision, lease;
};
struct sd_kvs {
	struct sd_record *recs;
	struct sd_kv_meta *meta;
	size_t n;
	int64_t revision;                /* the revision every page was read at */
	char *store;                     /* owns keys and values */
};
void sd_kvs_free(struct sd_kvs *kvs);

/* Reads [key, range_end) (range_end NULL: the key alone; "" with len 0 and
 * prefix true: every key starting with key) in pages, every page at the
 * revision of the first one (or at `revision` when > 0): the result is one
 * consistent snapshot. 0, or -1 + err. */
int sd_etcd_range(struct sd_etcd *c, const char *key, bool prefix, int64_t revision,
                  struct sd_kvs *out, char *err, size_t errlen);

/* Transactions: all compares hold -> the ops run, atomically. */
enum sd_cmp_target { SD_CMP_VALUE, SD_CMP_MOD, SD_CMP_CREATE, SD_CMP_VERSION };
enum sd_cmp_result { SD_CMP_EQUAL, SD_CMP_NOT_EQUAL, SD_CMP_LESS, SD_CMP_GREATER };
struct sd_cmp {
	enum sd_cmp_target target;
	enum sd_cmp_result result;
	const char *key;
	bool prefix;                     /* compare every key starting with key */
	const char *value;               /* SD_CMP_VALUE */
	size_t value_len;
	int64_t number;                  /* revision or version */
};
enum sd_op_kind { SD_OP_PUT, SD_OP_DELETE, SD_OP_DELETE_PREFIX };
struct sd_op {
	enum sd_op_kind kind;
	const char *key;
	size_t key_len;
	const char *value;
	size_t value_len;
	int64_t lease;                   /* 0: none */
};
/* At most SD_TXN_MAX_OPS ops. *succeeded tells whether the compares held;
 * *revision (may be NULL) is the revision after the txn. 0, or -1 + err. */
int sd_etcd_txn(struct sd_etcd *c, const struct sd_cmp *cmps, size_t ncmps, const struct sd_op *ops,
                size_t nops, bool *succeeded, int64_t *revision, char *err, size_t errlen);

/* Leases. keepalive sets *ttl to the remaining TTL, 0 when the lease is
 * gone (expired or revoked). revoke of an unknown lease is not an error. */
int sd_etcd_lease_grant(struct sd_etcd *c, int64_t ttl, int64_t *id, char *err, size_t errlen);
int sd_etcd_lease_keepalive(struct sd_etcd *c, int64_t id, int64_t *ttl, char *err, size_t errlen);
int sd_etcd_lease_revoke(struct sd_etcd *c, int64_t id, char *err, size_t errlen);

#endif /* SEEDGATE_SD_CURL_H */
