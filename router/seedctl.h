/*
 * seedctl.h — shared pieces of the seedctl subcommands.
 *
 * seedctl is one binary with one file per subcommand (seedctl_<cmd>.c); the
 * table of subcommands lives in seedctl.c. To add one: write
 * `int seedctl_<cmd>(int argc, char **argv)` (argv[0] is the subcommand
 * name, --help handled by it), declare it here and add a row to the table.
 * Subcommands return the process exit status: 0 ok, 1 failure (invalid seed,
 * bad id...), 2 usage error.
 */
#ifndef SEEDGATE_SEEDCTL_H
#define SEEDGATE_SEEDCTL_H

#include <stdbool.h>
#include <stdint.h>

#include "router.h"
#include "seeddir/seeddir.h"
#include "seeddir/sd_curl.h"

int seedctl_check(int argc, char **argv);
int seedctl_where(int argc, char **argv);
int seedctl_stats(int argc, char **argv);
int seedctl_haproxy(int argc, char **argv);
int seedctl_health(int argc, char **argv);
int seedctl_import(int argc, char **argv);
int seedctl_export(int argc, char **argv);
int seedctl_put(int argc, char **argv);
int seedctl_del(int argc, char **argv);
int seedctl_drain(int argc, char **argv);
int seedctl_register(int argc, char **argv);
int seedctl_token(int argc, char **argv);

/* Loads a seed directory: a file, or etcd://HOST:PORT[,...]/PREFIX (read
 * at one revision). On error prints "file:line: message" (or
 * "KEY: message") on stderr and returns NULL. */
struct router_dir *seedctl_load(const char *path, unsigned flags /* ROUTER_LOAD_* */);
struct router_dir *seedctl_load_etcd(const char *spec, unsigned flags);

/* ---- etcd (seedctl_etcd.c); every function prints its own errors */
struct seedctl_etcd {
	struct sd_etcd_spec spec;
	struct sd_etcd *c;
	char name[512];                  /* the spec, for messages */
};
/* The directory at one revision: PREFIX/current, its generation, live/. */
struct seedctl_snap {
	int64_t rev, cur_mod;            /* read revision; PREFIX/current's mod revision (0: absent) */
	bool have_gen;
	char gen[24];
	struct sd_kvs g, live;
	struct sd_record *all;           /* g then live */
	size_t nall;
};
int seedctl_etcd_open(const char *spec, struct seedctl_etcd *e);   /* "etcd://" optional */
void seedctl_etcd_close(struct seedctl_etcd *e);
void seedctl_key(const struct seedctl_etcd *e, char *out, size_t room, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int seedctl_snap_read(struct seedctl_etcd *e, struct seedctl_snap *s);
void seedctl_snap_free(struct seedctl_snap *s);
struct router_dir *seedctl_snap_build(const struct seedctl_etcd *e, const struct seedctl_snap *s,
                                      const struct sd_record *recs, size_t n, unsigned flags);
struct sd_record *seedctl_join(const struct sd_record *a, size_t na, const struct sd_record *b, size_t nb);
/* The generation alone, then with the registered records: 0 or -1. */
int seedctl_validate(const struct seedctl_etcd *e, const char *gen, const struct sd_record *g, size_t ng,
                     const struct sd_record *live, size_t nlive);
/* Fills the two guards of a generation writer's last transaction
 * (PREFIX/current unchanged, nothing under live/ changed); returns 2. */
size_t seedctl_gen_guards(const struct seedctl_etcd *e, const struct seedctl_snap *s, struct sd_cmp *cmps,
                          char keys[2][512]);
/* Index of datacenter name (NULL = the first one); prints an error and
 * returns -1 when there is no such dc. */
int seedctl_dc(const struct router_dir *d, const char *name);

#endif /* SEEDGATE_SEEDCTL_H */
