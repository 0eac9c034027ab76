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

#include "router.h"

int seedctl_check(int argc, char **argv);
int seedctl_where(int argc, char **argv);
int seedctl_stats(int argc, char **argv);
int seedctl_haproxy(int argc, char **argv);
int seedctl_health(int argc, char **argv);

/* Loads a seed file; on error prints "file:line: message" on stderr and
 * returns NULL. */
struct router_dir *seedctl_load(const char *path);
/* Index of datacenter name (NULL = the first one); prints an error and
 * returns -1 when there is no such dc. */
int seedctl_dc(const struct router_dir *d, const char *name);

#endif /* SEEDGATE_SEEDCTL_H */
