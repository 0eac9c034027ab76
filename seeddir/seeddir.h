/*
 * seeddir.h — where the seed directory comes from: a text file (one machine)
 * or etcd (every proxy of a cluster reads the same registry).
 *
 * A spec names the source: a path ("/etc/seedgate/seed.conf") or
 * "etcd://HOST:PORT[,HOST:PORT...]/PREFIX". Every program that reads a
 * directory (route-agent, healthcheckd, seedctl) takes either.
 *
 * The layout in etcd, one key per record, every value exactly one line of
 * the text form (docs/seed-directory.md), so both forms share one parser
 * and one set of rules:
 *
 *   PREFIX/current                 "<GEN>": the generation in use (decimal)
 *   PREFIX/g/<GEN>/replicas        "replicas N"
 *   PREFIX/g/<GEN>/ring-scale      "ring-scale S"
 *   PREFIX/g/<GEN>/node-shards     "node-shards N"
 *   PREFIX/g/<GEN>/check-defaults  "check-defaults key=value..."
 *   PREFIX/g/<GEN>/dc/<NNNN>       "dc NAME"; NNNN (4 digits, 0001 first) is
 *                                  the failover position the text form
 *                                  takes from file order
 *   PREFIX/g/<GEN>/hub/<NAME>      "hub NAME ADDR dc=DC ..."
 *   PREFIX/g/<GEN>/node/<NAME>     "node NAME ADDR dc=DC ..."
 *   PREFIX/g/<GEN>/pool/<NAME>     "pool NAME"
 *   PREFIX/g/<GEN>/server/<NAME>   "server NAME ADDR dc=DC pool=POOL ..."
 *   PREFIX/g/<GEN>/route/<P>       "route /<P> POOL" (P: the prefix without its leading /)
 *   PREFIX/g/<GEN>/project/<UUID>  "project UUID NODE..."  (lower-case UUID)
 *   PREFIX/live/node/<NAME>        "node NAME ADDR dc=DC ...", written by
 *   PREFIX/live/hub/<NAME>         `seedctl register` under a lease: it
 *                                  disappears when the lease expires
 *
 * Readers read PREFIX/current and the ranges g/<GEN>/ and live/ AT ONE
 * REVISION; keys under other generations are ignored. `seedctl import`
 * writes a whole new generation (batches of at most 128 operations), then
 * switches PREFIX/current in one transaction guarded by its old value, then
 * deletes the old generation: a reader never sees a half-written directory.
 * Single-record changes (seedctl put/del/drain) write under the current
 * generation in a transaction guarded by PREFIX/current.
 *
 * A key whose name disagrees with its value (hub/x holding "hub y ...",
 * node/x holding a hub, dc/0002 beside another dc/0002 name...) is an error
 * naming the key, like any parse error: "KEY: message". The whole directory
 * is then rejected and a running daemon keeps its last good one.
 */
#ifndef SEEDGATE_SEEDDIR_H
#define SEEDGATE_SEEDDIR_H

#include <stdbool.h>
#include <stddef.h>

#include "router.h"

#define SD_MAX_ENDPOINTS 16
#define SD_ENDPOINT_MAX  272        /* "http://" + host (up to 253) + ":port" */
#define SD_PREFIX_MAX    256

/* etcd://h1:2379,h2:2379/seedgate/prod -> endpoints "http://h1:2379", ...,
 * prefix "/seedgate/prod" (leading '/', no trailing '/'; "/" alone is
 * rejected: a directory never owns the whole key space). */
struct sd_etcd_spec {
	unsigned n;
	char endpoint[SD_MAX_ENDPOINTS][SD_ENDPOINT_MAX];
	char prefix[SD_PREFIX_MAX];
};

bool sd_is_etcd(const char *spec);   /* starts with "etcd://" */
/* Whether kw is a directory-wide setting (replicas, ring-scale, node-shards,
 * check-defaults): one key, PREFIX/g/<GEN>/<kw>, and no name. */
bool sd_setting(const char *kw);
int sd_etcd_spec_parse(const char *spec, struct sd_etcd_spec *out, char *err, size_t errlen);

/* One key/value of a range read; key is the FULL key (prefix included).
 * Neither is NUL-terminated necessarily; values may hold any bytes. */
struct sd_record {
	const char *key;
	size_t key_len;
	const char *value;
	size_t value_len;
};

/* Builds a directory from the records of one revision (any order; records
 * outside PREFIX/g/<gen>/ and PREFIX/live/ are ignored). Checks every key
 * against its value, assembles the text form in a fixed order (replicas,
 * check-defaults, dcs by position, hubs, nodes, registered records,
 * projects; by key within each) and parses it with the text parser. NULL +
 * "KEY: message" on any error. `source` names the directory in messages
 * (the spec). */
struct router_dir *sd_build(const char *prefix, const char *gen, const struct sd_record *recs,
                            size_t n, unsigned flags /* ROUTER_LOAD_* */, char *err, size_t errlen);

/* The same assembled text (what `seedctl export` prints and the daemons'
 * local copy holds): malloc'd, NUL-terminated, *len set. NULL + err. */
char *sd_text(const char *prefix, const char *gen, const struct sd_record *recs, size_t n,
              size_t *len, char *err, size_t errlen);

/* Splits a VALID text directory into the records of generation gen under
 * prefix (what `seedctl import` writes): keys and values malloc'd in one
 * block, freed with free(*out). Comments and blank lines are dropped; dc
 * positions follow file order. -1 + "file:line: message". */
int sd_records_from_text(const char *prefix, const char *gen, const char *text, size_t len,
                         const char *filename, struct sd_record **out, size_t *n,
                         char *err, size_t errlen);

#endif /* SEEDGATE_SEEDDIR_H */
