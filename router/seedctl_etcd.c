/*
 * seedctl_etcd.c — the seed directory in etcd, seen from seedctl: reading
 * it at one revision (every --seed etcd://... goes through here), and
 * `seedctl import` / `seedctl export`.
 *
 * The layout is seeddir.h's. Who writes what, and how they stay out of each
 * other's way:
 *   - writers of a generation (import, put, del, drain) put PREFIX/current
 *     in the same transaction as their change, guarded by the mod revision
 *     of PREFIX/current they read: two of them never both win, and readers
 *     watching PREFIX/current see every change;
 *   - they also guard on "no key under live/ changed since my read", so a
 *     record registered meanwhile is never left clashing with theirs;
 *   - register writes live/ only, guarded by PREFIX/current's mod revision.
 * A generation must be a valid directory on its own (registered records
 * come and go with their leases and must never be what makes it valid), and
 * together with the registered records.
 */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seedctl.h"

#define ETCD_TIMEOUT_MS 10000
#define SWITCH_TRIES    5             /* re-validations when live/ moves under an import */

/* ---------------------------------------------------------------------------
 * Shared helpers (seedctl.h)
 */

int seedctl_etcd_open(const char *arg, struct seedctl_etcd *e)
{
	char spec[4096], err[1024];

	memset(e, 0, sizeof(*e));
	/* --etcd takes the spec with or without its scheme */
	snprintf(spec, sizeof(spec), "%s%s", sd_is_etcd(arg) ? "" : "etcd://", arg);
	if (sd_etcd_spec_parse(spec, &e->spec, err, sizeof(err)) == -1) {
		fprintf(stderr, "seedctl: %s\n", err);
		return -1;
	}
	snprintf(e->name, sizeof(e->name), "%.*s", (int)sizeof(e->name) - 1, spec);
	e->c = sd_etcd_open(&e->spec, ETCD_TIMEOUT_MS, err, sizeof(err));
	if (!e->c) {
		fprintf(stderr, "seedctl: %s\n", err);
		return -1;
	}
	return 0;
}

void seedctl_etcd_close(struct seedctl_etcd *e)
{
	sd_etcd_close(&e->c);
}

void seedctl_key(const struct seedctl_etcd *e, char *out, size_t room, const char *fmt, ...)
{
	size_t o = (size_t)snprintf(out, room, "%s/", e->spec.prefix);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out + o, room - o, fmt, ap);
	va_end(ap);
}

void seedctl_snap_free(struct seedctl_snap *s)
{
	sd_kvs_free(&s->g);
	sd_kvs_free(&s->live);
	free(s->all);
	memset(s, 0, sizeof(*s));
}

/* Concatenates two record arrays (pointers shared, not copied). */
struct sd_record *seedctl_join(const struct sd_record *a, size_t na, const struct sd_record *b, size_t nb)
{
	struct sd_record *r = malloc((na + nb + 1) * sizeof(*r));

	if (!r)
		return NULL;
	if (na)
		memcpy(r, a, na * sizeof(*r));
	if (nb)
		memcpy(r + na, b, nb * sizeof(*r));
	return r;
}

int seedctl_snap_read(struct seedctl_etcd *e, struct seedctl_snap *s)
{
	char key[512], err[2048];
	struct sd_kvs cur;

	memset(s, 0, sizeof(*s));
	seedctl_key(e, key, sizeof(key), "current");
	if (sd_etcd_range(e->c, key, false, 0, &cur, err, sizeof(err)) == -1)
		goto fail;
	s->rev = cur.revision;
	if (cur.n) {
		s->cur_mod = cur.meta[0].mod_revision;
		if (cur.recs[0].value_len >= sizeof(s->gen) || memchr(cur.recs[0].value, '\0', cur.recs[0].value_len)) {
			sd_kvs_free(&cur);
			fprintf(stderr, "seedctl: %s: bad generation (a decimal number)\n", key);
			return -1;
		}
		memcpy(s->gen, cur.recs[0].value, cur.recs[0].value_len);
		s->have_gen = true;
	}
	sd_kvs_free(&cur);
	if (s->have_gen) {
		seedctl_key(e, key, sizeof(key), "g/%s/", s->gen);
		if (sd_etcd_range(e->c, key, true, s->rev, &s->g, err, sizeof(err)) == -1)
			goto fail;
	}
	seedctl_key(e, key, sizeof(key), "live/");
	if (sd_etcd_range(e->c, key, true, s->rev, &s->live, err, sizeof(err)) == -1)
		goto fail;
	s->all = seedctl_join(s->g.recs, s->g.n, s->live.recs, s->live.n);
	if (!s->all) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	s->nall = s->g.n + s->live.n;
	return 0;
fail:
	fprintf(stderr, "seedctl: %s\n", err);
	seedctl_snap_free(s);
	return -1;
}

struct router_dir *seedctl_snap_build(const struct seedctl_etcd *e, const struct seedctl_snap *s,
                                      const struct sd_record *recs, size_t n, unsigned flags)
{
	char err[2048];
	struct router_dir *d = sd_build(e->spec.prefix, s->have_gen ? s->gen : NULL, recs, n, flags,
	                                err, sizeof(err));

	if (!d)
		fprintf(stderr, "%s\n", err);
	return d;
}

/* Validates what a generation writer is about to write: the generation
 * alone, then with the registered records. Returns 0 or -1 (printed). */
int seedctl_validate(const struct seedctl_etcd *e, const char *gen, const struct sd_record *g, size_t ng,
                     const struct sd_record *live, size_t nlive)
{
	struct sd_record *all = seedctl_join(g, ng, live, nlive);
	struct router_dir *d;
	char err[2048];
	int ret = -1;

	if (!all) {
		fprintf(stderr, "seedctl: out of memory\n");
		return -1;
	}
	d = sd_build(e->spec.prefix, gen, g, ng, ROUTER_LOAD_NO_RINGS, err, sizeof(err));
	if (!d)
		goto out;
	router_dir_release(&d);
	d = sd_build(e->spec.prefix, gen, all, ng + nlive, ROUTER_LOAD_NO_RINGS, err, sizeof(err));
	if (!d)
		goto out;
	router_dir_release(&d);
	ret = 0;
out:
	if (ret)
		fprintf(stderr, "%s\n", err);
	free(all);
	return ret;
}

/* The guards every generation writer's final transaction carries. */
size_t seedctl_gen_guards(const struct seedctl_etcd *e, const struct seedctl_snap *s, struct sd_cmp *cmps,
                          char keys[2][512])
{
	seedctl_key(e, keys[0], sizeof(keys[0]), "current");
	seedctl_key(e, keys[1], sizeof(keys[1]), "live/");
	cmps[0] = (struct sd_cmp){ .target = SD_CMP_MOD, .result = SD_CMP_EQUAL, .key = keys[0],
	                           .number = s->cur_mod };
	cmps[1] = (struct sd_cmp){ .target = SD_CMP_MOD, .result = SD_CMP_LESS, .key = keys[1], .prefix = true,
	                           .number = s->rev + 1 };
	return 2;
}

struct router_dir *seedctl_load_etcd(const char *spec, unsigned flags)
{
	struct seedctl_etcd e;
	struct seedctl_snap s;
	struct router_dir *d = NULL;

	if (seedctl_etcd_open(spec, &e) == -1)
		return NULL;
	if (seedctl_snap_read(&e, &s) == 0) {
		d = seedctl_snap_build(&e, &s, s.all, s.nall, flags);
		seedctl_snap_free(&s);
	}
	seedctl_etcd_close(&e);
	return d;
}

/* ---------------------------------------------------------------------------
 * export
 */

static void export_usage(FILE *f)
{
	fprintf(f, "usage: seedctl export --etcd [etcd://]HOST:PORT[,...]/PREFIX [--no-live] [--out FILE]\n"
	        "Prints the directory held in etcd in its text form, read at one revision:\n"
	        "what every reader of it sees. The directory must be valid (exit 1 with\n"
	        "'KEY: message' otherwise).\n"
	        "  --etcd SPEC  the directory (etcd:// may be left out)\n"
	        "  --no-live    leave out the records registered with `seedctl register`\n"
	        "               (for editing and re-importing the generation)\n"
	        "  --out FILE   write FILE instead of stdout\n");
}

int seedctl_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "etcd", required_argument, NULL, 'e' }, { "no-live", no_argument, NULL, 'L' },
		{ "out", required_argument, NULL, 'o' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *spec = NULL, *out = NULL;
	bool no_live = false;
	struct seedctl_etcd e;
	struct seedctl_snap s;
	struct router_dir *d;
	char err[2048], *text;
	size_t len, n;
	int c, ret = 1;
	FILE *f;

	while ((c = getopt_long(argc, argv, "e:Lo:h", opts, NULL)) != -1) {
		switch (c) {
		case 'e': spec = optarg; break;
		case 'L': no_live = true; break;
		case 'o': out = optarg; break;
		case 'h': export_usage(stdout); return 0;
		default: export_usage(stderr); return 2;
		}
	}
	if (!spec || optind != argc) {
		export_usage(stderr);
		return 2;
	}
	if (seedctl_etcd_open(spec, &e) == -1)
		return 1;
	if (seedctl_snap_read(&e, &s) == -1)
		goto out_close;
	n = no_live ? s.g.n : s.nall;
	d = seedctl_snap_build(&e, &s, s.all, n, ROUTER_LOAD_NO_RINGS);
	if (!d)
		goto out_free;
	router_dir_release(&d);
	text = sd_text(e.spec.prefix, s.gen, s.all, n, &len, err, sizeof(err));
	if (!text) {
		fprintf(stderr, "%s\n", err);
		goto out_free;
	}
	f = out ? fopen(out, "w") : stdout;
	if (!f) {
		fprintf(stderr, "seedctl: %s: %s\n", out, strerror(errno));
	} else {
		fprintf(f, "# exported from %s, generation %s, etcd revision %" PRId64 "%s\n", e.name, s.gen,
		        s.rev, no_live ? " (registered records left out)" : "");
		fwrite(text, 1, len, f);
		ret = (ferror(f) || fflush(f) == EOF) ? 1 : 0;
		if (out && fclose(f) == EOF)
			ret = 1;
		if (ret)
			fprintf(stderr, "seedctl: export: write error\n");
	}
	free(text);
out_free:
	seedctl_snap_free(&s);
out_close:
	seedctl_etcd_close(&e);
	return ret;
}

/* ---------------------------------------------------------------------------
 * import
 */

static void import_usage(FILE *f)
{
	fprintf(f, "usage: seedctl import --etcd [etcd://]HOST:PORT[,...]/PREFIX FILE\n"
	        "Replaces the directory in etcd with FILE. FILE is validated first (exit 1\n"
	        "with file:line, nothing written), then with the records registered in\n"
	        "etcd. A new generation is written in transactions of at most %d keys,\n"
	        "then PREFIX/current is switched to it in one transaction guarded by its\n"
	        "old value, then the old generation is deleted: readers see the old\n"
	        "directory or the new one, never a mix. When another writer switched\n"
	        "PREFIX/current first, the import fails, removes what it wrote, exits 1.\n"
	        "  --etcd SPEC  the directory (etcd:// may be left out)\n", SD_TXN_MAX_OPS);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t room = 0, n;

	*len = 0;
	if (!f)
		return NULL;
	do {
		if (*len + 65536 > room) {
			char *nb = realloc(buf, room = room ? room * 2 : 131072);

			if (!nb) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
		}
		n = fread(buf + *len, 1, room - *len - 1, f);
		*len += n;
	} while (n > 0);
	if (ferror(f)) {
		free(buf);
		fclose(f);
		errno = EIO;
		return NULL;
	}
	fclose(f);
	buf[*len] = '\0';
	return buf;
}

/* Removes a generation that will never be switched to; best effort. */
static void drop_generation(struct seedctl_etcd *e, const char *gen)
{
	char key[512], err[1024];
	struct sd_op op = { .kind = SD_OP_DELETE_PREFIX, .key = key };
	bool ok;

	seedctl_key(e, key, sizeof(key), "g/%s/", gen);
	op.key_len = strlen(key);
	if (sd_etcd_txn(e->c, NULL, 0, &op, 1, &ok, NULL, err, sizeof(err)) == -1)
		fprintf(stderr, "seedctl: could not remove %s (harmless, nothing reads it): %s\n", key, err);
}

/* Writes recs as generation gen in batches; the first batch only if the
 * generation is still empty (two imports that picked the same number:
 * one stops here). 0, 1 = generation taken, -1 = error (printed).
 * *started: the first batch is in, the generation is ours to remove. */
static int write_generation(struct seedctl_etcd *e, const char *gen, const struct sd_record *recs, size_t n,
                            bool *started)
{
	struct sd_op ops[SD_TXN_MAX_OPS];
	char gkey[512], err[2048];

	seedctl_key(e, gkey, sizeof(gkey), "g/%s/", gen);
	for (size_t i = 0; i < n; ) {
		struct sd_cmp empty = { .target = SD_CMP_CREATE, .result = SD_CMP_EQUAL, .key = gkey,
		                        .prefix = true, .number = 0 };
		size_t k = 0;
		bool ok;

		for (; k < SD_TXN_MAX_OPS && i + k < n; k++)
			ops[k] = (struct sd_op){ .kind = SD_OP_PUT, .key = recs[i + k].key,
			                         .key_len = recs[i + k].key_len, .value = recs[i + k].value,
			                         .value_len = recs[i + k].value_len };
		if (sd_etcd_txn(e->c, i ? NULL : &empty, i ? 0 : 1, ops, k, &ok, NULL, err, sizeof(err)) == -1) {
			fprintf(stderr, "seedctl: writing %s: %s\n", gkey, err);
			return -1;
		}
		if (!ok)
			return 1;
		*started = true;
		i += k;
	}
	return 0;
}

int seedctl_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "etcd", required_argument, NULL, 'e' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *spec = NULL, *file;
	struct sd_record *recs = NULL;
	struct seedctl_etcd e;
	struct seedctl_snap s = { 0 };
	char err[2048], gen[24], key[512], old[24] = "";
	size_t len, n;
	char *text;
	int c, ret = 1, w;
	bool had_old, wrote = false;

	while ((c = getopt_long(argc, argv, "e:h", opts, NULL)) != -1) {
		switch (c) {
		case 'e': spec = optarg; break;
		case 'h': import_usage(stdout); return 0;
		default: import_usage(stderr); return 2;
		}
	}
	if (!spec || optind != argc - 1) {
		import_usage(stderr);
		return 2;
	}
	file = argv[optind];
	text = read_file(file, &len);
	if (!text) {
		fprintf(stderr, "seedctl: %s: %s\n", file, strerror(errno));
		return 1;
	}
	if (seedctl_etcd_open(spec, &e) == -1) {
		free(text);
		return 1;
	}
	/* The file on its own first: a bad file never reaches etcd. */
	if (sd_records_from_text(e.spec.prefix, "1", text, len, file, &recs, &n, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	free(recs);
	recs = NULL;
	if (seedctl_snap_read(&e, &s) == -1)
		goto out;
	/* The read revision names the generation: it grows with every write,
	 * so it is new unless another import read at the same revision (then
	 * the empty-generation guard stops one of them). */
	{
		/* ...and above the one in use even when PREFIX/current was set
		 * by hand to a number from the future */
		long long in_use = s.have_gen ? strtoll(s.gen, NULL, 10) : 0;

		snprintf(gen, sizeof(gen), "%lld", s.rev > in_use ? (long long)s.rev : in_use + 1);
	}
	had_old = s.have_gen;
	snprintf(old, sizeof(old), "%s", s.gen);
	if (sd_records_from_text(e.spec.prefix, gen, text, len, file, &recs, &n, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	if (seedctl_validate(&e, gen, recs, n, s.live.recs, s.live.n) == -1)
		goto out;
	w = write_generation(&e, gen, recs, n, &wrote);
	if (w) {
		if (w == 1)
			fprintf(stderr, "seedctl: another import is writing generation %s of %s at the same "
			        "time: nothing switched, PREFIX/current left as it was\n", gen, e.name);
		goto out;
	}
	for (int tries = 0; ; tries++) {
		struct sd_cmp cmps[2];
		char gkeys[2][512];
		struct sd_op op = { .kind = SD_OP_PUT, .key = key, .value = gen, .value_len = strlen(gen) };
		size_t nc = seedctl_gen_guards(&e, &s, cmps, gkeys);
		bool ok;
		int64_t cur_mod = s.cur_mod;

		seedctl_key(&e, key, sizeof(key), "current");
		op.key_len = strlen(key);
		if (sd_etcd_txn(e.c, cmps, nc, &op, 1, &ok, NULL, err, sizeof(err)) == -1) {
			fprintf(stderr, "seedctl: switching %s: %s\n", key, err);
			goto out;
		}
		if (ok)
			break;
		/* Who moved? PREFIX/current: another writer won, we lose. Only
		 * live/: re-validate against the registered records now. */
		seedctl_snap_free(&s);
		if (seedctl_snap_read(&e, &s) == -1)
			goto out;
		if (s.cur_mod != cur_mod) {
			fprintf(stderr, "seedctl: %s changed during the import (another import or edit): "
			        "nothing switched, the other change stands\n", key);
			goto out;
		}
		if (tries + 1 == SWITCH_TRIES) {
			fprintf(stderr, "seedctl: registered records keep changing under %s/live/: nothing "
			        "switched, run the import again\n", e.spec.prefix);
			goto out;
		}
		if (seedctl_validate(&e, gen, recs, n, s.live.recs, s.live.n) == -1)
			goto out;
	}
	wrote = false;                           /* switched: the generation is in use */
	if (had_old)
		drop_generation(&e, old);
	printf("%s: imported %zu records from %s as generation %s%s%s\n", e.name, n, file, gen,
	       had_old ? ", replacing generation " : "", had_old ? old : "");
	ret = 0;
out:
	if (wrote)
		drop_generation(&e, gen);
	seedctl_snap_free(&s);
	free(recs);
	free(text);
	seedctl_etcd_close(&e);
	return ret;
}
