/*
 * seedctl put / del / drain — single-record changes of the directory in
 * etcd, under its current generation.
 *
 * Each change is computed from a snapshot (one revision), validated (the
 * generation alone, then with the registered records: the result must
 * parse) and written in one transaction with PREFIX/current re-put, guarded
 * by PREFIX/current's mod revision and by live/ being unchanged (see
 * seedctl_etcd.c). When another writer got there first, the change is
 * recomputed on a fresh snapshot, a few times, then given up.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seedctl.h"

#define EDIT_TRIES 5
#define BLANKS     " \t\r\v\f"

/* One change: put key=value, or delete key. */
struct change {
	char key[512];
	char *value;                     /* malloc'd; NULL = delete */
	char what[160];                  /* for the success line */
};

/* Computes the change from a snapshot: 0, or -1 (printed). */
typedef int (*change_fn)(const struct seedctl_etcd *e, const struct seedctl_snap *s, void *arg, struct change *ch);

/* Word i of a one-line value (comment cut) into out; false if absent. */
static bool word(const char *v, size_t len, unsigned i, char *out, size_t room)
{
	size_t p = 0;

	for (unsigned k = 0; ; k++) {
		size_t start;

		while (p < len && v[p] && strchr(BLANKS, v[p]))
			p++;
		if (p == len || v[p] == '#')
			return false;
		start = p;
		while (p < len && (!v[p] || !strchr(BLANKS "#", v[p])))
			p++;
		if (k == i) {
			snprintf(out, room, "%.*s", (int)(p - start), v + start);
			return true;
		}
	}
}

/* Index in s->g of the record with this full key, or -1. */
static long find_key(const struct seedctl_snap *s, const char *key)
{
	size_t kl = strlen(key);

	for (size_t i = 0; i < s->g.n; i++)
		if (s->g.recs[i].key_len == kl && !memcmp(s->g.recs[i].key, key, kl))
			return (long)i;
	return -1;
}

/* Key of the dc record naming dc `name` (or, with name NULL, the next free
 * position) into key. -1 when there is no such dc / no free position. */
static int dc_key(const struct seedctl_etcd *e, const struct seedctl_snap *s, const char *name,
                  char *key, size_t room)
{
	char pfx[512], w[64];
	size_t pl;
	unsigned maxpos = 0;

	seedctl_key(e, pfx, sizeof(pfx), "g/%s/dc/", s->gen);
	pl = strlen(pfx);
	for (size_t i = 0; i < s->g.n; i++) {
		const struct sd_record *r = &s->g.recs[i];

		if (r->key_len != pl + 4 || memcmp(r->key, pfx, pl))
			continue;
		if (name && word(r->value, r->value_len, 1, w, sizeof(w)) && !strcmp(w, name)) {
			snprintf(key, room, "%.*s", (int)r->key_len, r->key);
			return 0;
		}
		unsigned pos = (unsigned)strtoul(r->key + pl, NULL, 10);   /* 4 digits, checked by sd_build */
		if (pos > maxpos)
			maxpos = pos;
	}
	if (name || maxpos >= 9999)
		return -1;
	snprintf(key, room, "%s%04u", pfx, maxpos + 1);
	return 0;
}

static int need_gen(const struct seedctl_etcd *e, const struct seedctl_snap *s)
{
	if (s->have_gen)
		return 0;
	fprintf(stderr, "seedctl: %s holds no directory yet (%s/current is missing): "
	        "start with `seedctl import`\n", e->name, e->spec.prefix);
	return -1;
}

/* Runs fn on fresh snapshots until its change is written. */
static int edit(const char *spec, change_fn fn, void *arg)
{
	struct seedctl_etcd e;
	int ret = 1;

	if (seedctl_etcd_open(spec, &e) == -1)
		return 1;
	for (int tries = 0; tries < EDIT_TRIES; tries++) {
		struct seedctl_snap s;
		struct change ch = { .value = NULL };
		struct sd_record *recs;
		size_t n = 0;
		long at;
		struct sd_cmp cmps[2];
		char gkeys[2][512], cur[512], err[2048];
		struct sd_op ops[2];
		bool ok;

		if (seedctl_snap_read(&e, &s) == -1)
			break;
		if (need_gen(&e, &s) == -1 || fn(&e, &s, arg, &ch) == -1) {
			seedctl_snap_free(&s);
			free(ch.value);
			break;
		}
		/* the generation as it will be */
		recs = malloc((s.g.n + 1) * sizeof(*recs));
		if (!recs) {
			fprintf(stderr, "seedctl: out of memory\n");
			seedctl_snap_free(&s);
			free(ch.value);
			break;
		}
		at = find_key(&s, ch.key);
		for (size_t i = 0; i < s.g.n; i++)
			if ((long)i != at)
				recs[n++] = s.g.recs[i];
		if (ch.value)
			recs[n++] = (struct sd_record){ ch.key, strlen(ch.key), ch.value, strlen(ch.value) };
		if (seedctl_validate(&e, s.gen, recs, n, s.live.recs, s.live.n) == -1) {
			free(recs);
			seedctl_snap_free(&s);
			free(ch.value);
			break;
		}
		free(recs);
		seedctl_key(&e, cur, sizeof(cur), "current");
		ops[0] = (struct sd_op){ .kind = ch.value ? SD_OP_PUT : SD_OP_DELETE, .key = ch.key,
		                         .key_len = strlen(ch.key), .value = ch.value,
		                         .value_len = ch.value ? strlen(ch.value) : 0 };
		/* re-put PREFIX/current: its mod revision orders every writer */
		ops[1] = (struct sd_op){ .kind = SD_OP_PUT, .key = cur, .key_len = strlen(cur),
		                         .value = s.gen, .value_len = strlen(s.gen) };
		if (sd_etcd_txn(e.c, cmps, seedctl_gen_guards(&e, &s, cmps, gkeys), ops, 2, &ok, NULL,
		                err, sizeof(err)) == -1) {
			fprintf(stderr, "seedctl: %s\n", err);
			seedctl_snap_free(&s);
			free(ch.value);
			break;
		}
		seedctl_snap_free(&s);
		free(ch.value);
		if (ok) {
			printf("%s: %s\n", e.name, ch.what);
			ret = 0;
			break;
		}
		if (tries + 1 == EDIT_TRIES)
			fprintf(stderr, "seedctl: the directory kept changing under %s: nothing written\n", e.name);
	}
	seedctl_etcd_close(&e);
	return ret;
}

/* ---------------------------------------------------------------------------
 * put
 */

static void put_usage(FILE *f)
{
	fprintf(f, "usage: seedctl put --etcd [etcd://]HOST:PORT[,...]/PREFIX \"RECORD\"\n"
	        "Adds or replaces one record of the current generation. RECORD is one line of\n"
	        "the text form:\n"
	        "  \"node NAME ADDR dc=DC [key=value...]\"   \"hub NAME ADDR dc=DC [...]\"\n"
	        "  \"dc NAME\" (a new dc goes last in the failover order)\n"
	        "  \"project UUID NODE...\"   \"replicas N\"   \"ring-scale S\"   \"node-shards N\"\n"
	        "  \"check-defaults key=value...\"\n"
	        "  \"pool NAME\"   \"server NAME ADDR dc=DC pool=POOL [...]\"   \"route PREFIX POOL\"\n"
	        "The resulting directory must be valid (exit 1 with 'KEY: message', nothing\n"
	        "written). The write is guarded by PREFIX/current: a concurrent change is\n"
	        "never lost, this one is recomputed on top of it.\n"
	        "  --etcd SPEC  the directory (etcd:// may be left out)\n");
}

static int put_change(const struct seedctl_etcd *e, const struct seedctl_snap *s, void *arg, struct change *ch)
{
	const char *line = arg;
	size_t len = strlen(line);
	char kw[32], name[ROUTER_ROUTE_LEN_MAX + 8];

	if (!word(line, len, 0, kw, sizeof(kw))) {
		fprintf(stderr, "seedctl: put: empty record\n");
		return -1;
	}
	if (sd_setting(kw))
		seedctl_key(e, ch->key, sizeof(ch->key), "g/%s/%s", s->gen, kw);
	else if (!word(line, len, 1, name, sizeof(name))) {
		fprintf(stderr, "seedctl: put: '%s' needs a name\n", kw);
		return -1;
	} else if (!strcmp(kw, "hub") || !strcmp(kw, "node") || !strcmp(kw, "pool") || !strcmp(kw, "server"))
		seedctl_key(e, ch->key, sizeof(ch->key), "g/%s/%s/%s", s->gen, kw, name);
	else if (!strcmp(kw, "route")) {
		if (name[0] != '/') {
			fprintf(stderr, "seedctl: put: bad route prefix '%s' (must start with /)\n", name);
			return -1;
		}
		seedctl_key(e, ch->key, sizeof(ch->key), "g/%s/route/%s", s->gen, name + 1);
	}
	else if (!strcmp(kw, "dc")) {
		if (dc_key(e, s, name, ch->key, sizeof(ch->key)) == -1 &&
		    dc_key(e, s, NULL, ch->key, sizeof(ch->key)) == -1) {
			fprintf(stderr, "seedctl: put: no free dc position\n");
			return -1;
		}
	} else if (!strcmp(kw, "project")) {
		uint8_t id[16];
		char canon[37];

		if (router_project_parse(name, strlen(name), id) == -1) {
			fprintf(stderr, "seedctl: put: bad project id '%s' (8-4-4-4-12 hex digits)\n", name);
			return -1;
		}
		router_project_format(id, canon);
		seedctl_key(e, ch->key, sizeof(ch->key), "g/%s/project/%s", s->gen, canon);
	} else {
		fprintf(stderr, "seedctl: put: unknown record '%s' (node, hub, dc, project, replicas, "
		        "ring-scale, node-shards, check-defaults, pool, server, route)\n", kw);
		return -1;
	}
	ch->value = strdup(line);
	if (!ch->value)
		return -1;
	snprintf(ch->what, sizeof(ch->what), "put %.*s", (int)sizeof(ch->what) - 8, ch->key);
	return 0;
}

int seedctl_put(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "etcd", required_argument, NULL, 'e' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *spec = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "e:h", opts, NULL)) != -1) {
		switch (c) {
		case 'e': spec = optarg; break;
		case 'h': put_usage(stdout); return 0;
		default: put_usage(stderr); return 2;
		}
	}
	if (!spec || optind != argc - 1) {
		put_usage(stderr);
		return 2;
	}
	return edit(spec, put_change, argv[optind]);
}

/* ---------------------------------------------------------------------------
 * del
 */

static void del_usage(FILE *f)
{
	fprintf(f, "usage: seedctl del --etcd [etcd://]HOST:PORT[,...]/PREFIX KIND [NAME]\n"
	        "Removes one record of the current generation. KIND NAME is one of\n"
	        "  node NAME | hub NAME | dc NAME | project UUID | replicas | ring-scale |\n"
	        "  node-shards | check-defaults | pool NAME | server NAME | route PREFIX\n"
	        "The resulting directory must be valid (a dc still used, a node still\n"
	        "pinned: exit 1 with 'KEY: message', nothing written). Registered records\n"
	        "(live/) go away with their `seedctl register`, not with del.\n"
	        "  --etcd SPEC  the directory (etcd:// may be left out)\n");
}

struct del_arg {
	const char *kind, *name;
};

static int del_change(const struct seedctl_etcd *e, const struct seedctl_snap *s, void *arg, struct change *ch)
{
	const struct del_arg *a = arg;
	bool needs_name = !sd_setting(a->kind);

	if (needs_name != (a->name != NULL)) {
		fprintf(stderr, "seedctl: del: %s %s\n", a->kind, needs_name ? "needs a name" : "takes no name");
		return -1;
	}
	if (!needs_name)
		seedctl_key(e, ch->key, sizeof(ch->key), "g/%s/%s", s->gen, a->kind);
	else if (!strcmp(a->kind, "hub") || !strcmp(a->kind, "node") || !strcmp(a->kind, "pool") ||
	         !strcmp(a->kind, "server"))
		seedctl_key(e, ch->key, sizeof(ch->key), "g/%s/%s/%s", s->gen, a->kind, a->name);
	else if (!strcmp(a->kind, "route") && a->name[0] == '/')
		seedctl_key(e, ch->key, sizeof(ch->key), "g/%s/route/%s", s->gen, a->name + 1);
	else if (!strcmp(a->kind, "dc")) {
		if (dc_key(e, s, a->name, ch->key, sizeof(ch->key)) == -1)
			ch->key[0] = '\0';
	} else if (!strcmp(a->kind, "project")) {
		uint8_t id[16];
		char canon[37];

		if (router_project_parse(a->name, strlen(a->name), id) == -1) {
			fprintf(stderr, "seedctl: del: bad project id '%s'\n", a->name);
			return -1;
		}
		router_project_format(id, canon);
		seedctl_key(e, ch->key, sizeof(ch->key), "g/%s/project/%s", s->gen, canon);
	} else {
		fprintf(stderr, "seedctl: del: unknown kind '%s' (node, hub, dc, project, replicas, "
		        "ring-scale, node-shards, check-defaults, pool, server, route /PREFIX)\n", a->kind);
		return -1;
	}
	if (!ch->key[0] || find_key(s, ch->key) < 0) {
		fprintf(stderr, "seedctl: del: no %s%s%s in generation %s of %s\n", a->kind, a->name ? " " : "",
		        a->name ? a->name : "", s->gen, e->name);
		return -1;
	}
	snprintf(ch->what, sizeof(ch->what), "deleted %.*s", (int)sizeof(ch->what) - 12, ch->key);
	return 0;
}

int seedctl_del(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "etcd", required_argument, NULL, 'e' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	struct del_arg a = { NULL, NULL };
	const char *spec = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "e:h", opts, NULL)) != -1) {
		switch (c) {
		case 'e': spec = optarg; break;
		case 'h': del_usage(stdout); return 0;
		default: del_usage(stderr); return 2;
		}
	}
	if (!spec || optind == argc || argc - optind > 2) {
		del_usage(stderr);
		return 2;
	}
	a.kind = argv[optind];
	a.name = argc - optind == 2 ? argv[optind + 1] : NULL;
	return edit(spec, del_change, &a);
}

/* ---------------------------------------------------------------------------
 * drain
 */

static void drain_usage(FILE *f)
{
	fprintf(f, "usage: seedctl drain --etcd [etcd://]HOST:PORT[,...]/PREFIX [--undrain] NAME\n"
	        "Sets state=drain on hub, node or pool server NAME of the current generation\n"
	        "(no request goes to it; a node's projects go to their next entry), or with --undrain puts\n"
	        "it back up. Registered records are drained by their register command\n"
	        "(state=drain in its record).\n"
	        "  --etcd SPEC  the directory (etcd:// may be left out)\n"
	        "  --undrain    remove state=drain instead\n");
}

struct drain_arg {
	const char *name;
	bool undrain;
};

static int drain_change(const struct seedctl_etcd *e, const struct seedctl_snap *s, void *arg, struct change *ch)
{
	const struct drain_arg *a = arg;
	const struct sd_record *r = NULL;
	size_t o = 0, room;
	char w[1024];

	static const char *const kinds[] = { "node", "hub", "server" };

	for (int k = 0; k < 3 && !r; k++) {
		long at;

		seedctl_key(e, ch->key, sizeof(ch->key), "g/%s/%s/%s", s->gen, kinds[k], a->name);
		at = find_key(s, ch->key);
		if (at >= 0)
			r = &s->g.recs[at];
	}
	if (!r) {
		fprintf(stderr, "seedctl: drain: no hub, node or server '%s' in generation %s of %s\n", a->name, s->gen,
		        e->name);
		return -1;
	}
	/* the same words, state= replaced */
	room = r->value_len + sizeof(" state=drain");
	ch->value = malloc(room);
	if (!ch->value)
		return -1;
	for (unsigned i = 0; word(r->value, r->value_len, i, w, sizeof(w)); i++) {
		if (!strncmp(w, "state=", 6))
			continue;
		o += (size_t)snprintf(ch->value + o, room - o, "%s%s", o ? " " : "", w);
	}
	if (!a->undrain)
		snprintf(ch->value + o, room - o, " state=drain");
	snprintf(ch->what, sizeof(ch->what), "%s %s", a->undrain ? "undrained" : "drained", a->name);
	return 0;
}

int seedctl_drain(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "etcd", required_argument, NULL, 'e' }, { "undrain", no_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	struct drain_arg a = { NULL, false };
	const char *spec = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "e:uh", opts, NULL)) != -1) {
		switch (c) {
		case 'e': spec = optarg; break;
		case 'u': a.undrain = true; break;
		case 'h': drain_usage(stdout); return 0;
		default: drain_usage(stderr); return 2;
		}
	}
	if (!spec || optind != argc - 1) {
		drain_usage(stderr);
		return 2;
	}
	a.name = argv[optind];
	return edit(spec, drain_change, &a);
}
