/*
 * seedctl register --etcd SPEC --ttl SECONDS "node NAME ADDR dc=DC ..."
 *
 * Membership by lease: the record lives at PREFIX/live/node/NAME (or
 * live/hub/NAME) under an etcd lease this process keeps alive. Stop it
 * (SIGTERM, SIGINT) and the lease is revoked: the record goes at once. Kill
 * it, or cut it off from etcd, and the record goes when the lease expires.
 * Health is healthcheckd's business: a registered node is checked like any
 * other; the lease only says it is a member.
 *
 * Every TTL/3 the lease is renewed and the record looked at; if it vanished
 * (the lease expired during a partition, someone deleted it) a new lease is
 * granted and the record written again, with the same checks as the first
 * time.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "seedctl.h"

#define CLAIM_TRIES   5
#define TTL_MAX       (24 * 3600)

static volatile sig_atomic_t stop_sig;

static void on_stop(int sig)
{
	stop_sig = sig;
}

static void register_usage(FILE *f)
{
	fprintf(f, "usage: seedctl register --etcd [etcd://]HOST:PORT[,...]/PREFIX --ttl SECONDS \"RECORD\"\n"
	        "Registers one node or hub while this command runs. RECORD is a 'node' or\n"
	        "'hub' line of the text form (\"node NAME ADDR dc=DC [weight=N] ...\"); it is\n"
	        "written to PREFIX/live/node/NAME (or live/hub/NAME) under a lease of\n"
	        "SECONDS, renewed every SECONDS/3. Refused (exit 1) when NAME is in the\n"
	        "current generation, is registered by another running register, or the\n"
	        "directory would not be valid with it. If the record vanishes (lease\n"
	        "expired while etcd was unreachable), it is written again under a new lease.\n"
	        "SIGTERM or SIGINT revoke the lease (the record goes at once) and exit 0; a\n"
	        "killed register's record goes when its lease expires.\n"
	        "  --etcd SPEC    the directory (etcd:// may be left out)\n"
	        "  --ttl SECONDS  lease time to live, 2-%d\n", TTL_MAX);
}

struct reg {
	struct seedctl_etcd e;
	const char *line, *kind, *other;     /* "node"/"hub", and the other one */
	char name[64];
	char key[512], other_key[512];       /* live/KIND/NAME, live/OTHER/NAME */
	int64_t ttl, lease;
};

/* Looks for NAME in the snapshot: 1 (refuse, printed) if the generation has
 * it or another lease holds it, else 0. */
static int taken(const struct reg *r, const struct seedctl_snap *s)
{
	char k[512];

	for (int i = 0; i < 2; i++) {
		seedctl_key(&r->e, k, sizeof(k), "g/%s/%s/%s", s->gen, i ? "hub" : "node", r->name);
		for (size_t j = 0; j < s->g.n; j++)
			if (s->g.recs[j].key_len == strlen(k) && !memcmp(s->g.recs[j].key, k, strlen(k))) {
				fprintf(stderr, "seedctl: register: '%s' is in generation %s of %s (%s): "
				        "remove it there first\n", r->name, s->gen, r->e.name, k);
				return 1;
			}
	}
	for (size_t j = 0; j < s->live.n; j++) {
		const struct sd_record *lr = &s->live.recs[j];

		if (((lr->key_len == strlen(r->key) && !memcmp(lr->key, r->key, lr->key_len)) ||
		     (lr->key_len == strlen(r->other_key) && !memcmp(lr->key, r->other_key, lr->key_len))) &&
		    s->live.meta[j].lease != r->lease) {
			fprintf(stderr, "seedctl: register: '%s' is registered by another lease (%.*s, lease %"
			        PRIx64 ")\n", r->name, (int)lr->key_len, lr->key, (uint64_t)s->live.meta[j].lease);
			return 1;
		}
	}
	return 0;
}

/* Grants a lease and writes the record. 0 done, 1 refused (printed: exit
 * 1), -1 etcd trouble (printed: try again later). */
static int claim(struct reg *r)
{
	char err[2048], cur[512];

	seedctl_key(&r->e, cur, sizeof(cur), "current");
	for (int tries = 0; tries < CLAIM_TRIES; tries++) {
		struct seedctl_snap s;
		struct sd_record mine = { r->key, strlen(r->key), r->line, strlen(r->line) };
		struct sd_record *live;
		struct sd_cmp cmps[3];
		struct sd_op op;
		bool ok;
		int bad;

		if (seedctl_snap_read(&r->e, &s) == -1)
			return -1;
		if (!s.have_gen) {
			fprintf(stderr, "seedctl: register: %s holds no directory (%s/current is missing)\n",
			        r->e.name, r->e.spec.prefix);
			seedctl_snap_free(&s);
			return 1;
		}
		bad = taken(r, &s);
		live = bad ? NULL : seedctl_join(s.live.recs, s.live.n, &mine, 1);
		if (!bad && !live)
			bad = -1;
		if (!bad)
			bad = seedctl_validate(&r->e, s.gen, s.g.recs, s.g.n, live, s.live.n + 1) ? 1 : 0;
		free(live);
		if (bad) {
			seedctl_snap_free(&s);
			return bad;
		}
		if (sd_etcd_lease_grant(r->e.c, r->ttl, &r->lease, err, sizeof(err)) == -1) {
			fprintf(stderr, "seedctl: register: %s\n", err);
			seedctl_snap_free(&s);
			return -1;
		}
		/* Written only if the generation did not move (a writer adding
		 * NAME meanwhile) and nobody holds either key. */
		cmps[0] = (struct sd_cmp){ .target = SD_CMP_MOD, .result = SD_CMP_EQUAL, .key = cur,
		                           .number = s.cur_mod };
		cmps[1] = (struct sd_cmp){ .target = SD_CMP_CREATE, .result = SD_CMP_EQUAL, .key = r->key };
		cmps[2] = (struct sd_cmp){ .target = SD_CMP_CREATE, .result = SD_CMP_EQUAL, .key = r->other_key };
		op = (struct sd_op){ .kind = SD_OP_PUT, .key = r->key, .key_len = strlen(r->key), .value = r->line,
		                     .value_len = strlen(r->line), .lease = r->lease };
		seedctl_snap_free(&s);
		if (sd_etcd_txn(r->e.c, cmps, 3, &op, 1, &ok, NULL, err, sizeof(err)) == -1) {
			fprintf(stderr, "seedctl: register: %s\n", err);
			sd_etcd_lease_revoke(r->e.c, r->lease, err, sizeof(err));
			r->lease = 0;
			return -1;
		}
		if (ok) {
			printf("registered %s (lease %" PRIx64 ", ttl %" PRId64 " s)\n", r->key, (uint64_t)r->lease, r->ttl);
			fflush(stdout);
			return 0;
		}
		sd_etcd_lease_revoke(r->e.c, r->lease, err, sizeof(err));
		r->lease = 0;
	}
	fprintf(stderr, "seedctl: register: the directory kept changing under %s; will retry\n", r->e.name);
	return -1;
}

/* Is our record still there under our lease? 1 yes, 0 no, -1 etcd trouble. */
static int still_there(struct reg *r)
{
	char err[2048];
	struct sd_kvs kvs;
	int64_t ttl = 0;
	int ret;

	if (sd_etcd_lease_keepalive(r->e.c, r->lease, &ttl, err, sizeof(err)) == -1) {
		if (strstr(err, "lease not found"))
			return 0;                  /* gone: some etcd versions say it this way */
		fprintf(stderr, "seedctl: register: %s\n", err);
		return -1;
	}
	if (sd_etcd_range(r->e.c, r->key, false, 0, &kvs, err, sizeof(err)) == -1) {
		fprintf(stderr, "seedctl: register: %s\n", err);
		return -1;
	}
	ret = ttl > 0 && kvs.n == 1 && kvs.meta[0].lease == r->lease;
	sd_kvs_free(&kvs);
	return ret;
}

/* Sleeps ms unless a stop signal comes (checked every 100 ms). */
static void nap(long ms)
{
	while (ms > 0 && !stop_sig) {
		struct timespec t = { 0, (ms > 100 ? 100 : ms) * 1000000L };

		nanosleep(&t, NULL);
		ms -= 100;
	}
}

int seedctl_register(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "etcd", required_argument, NULL, 'e' }, { "ttl", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	struct reg r = { .ttl = 0 };
	const char *spec = NULL;
	char kw[16], err[2048], *end;
	struct sigaction sa;
	bool trouble = false;
	int c, ret = 1;

	while ((c = getopt_long(argc, argv, "e:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'e': spec = optarg; break;
		case 't':
			errno = 0;
			r.ttl = strtoll(optarg, &end, 10);
			if (errno || *end || r.ttl < 2 || r.ttl > TTL_MAX) {
				fprintf(stderr, "seedctl: register: bad --ttl '%s' (2-%d seconds)\n", optarg, TTL_MAX);
				return 2;
			}
			break;
		case 'h': register_usage(stdout); return 0;
		default: register_usage(stderr); return 2;
		}
	}
	if (!spec || !r.ttl || optind != argc - 1) {
		register_usage(stderr);
		return 2;
	}
	r.line = argv[optind];
	if (sscanf(r.line, " %15s %63s", kw, r.name) != 2 || (strcmp(kw, "node") && strcmp(kw, "hub"))) {
		fprintf(stderr, "seedctl: register: the record must be a 'node NAME ...' or 'hub NAME ...' line\n");
		return 2;
	}
	r.kind = !strcmp(kw, "node") ? "node" : "hub";
	r.other = !strcmp(kw, "node") ? "hub" : "node";
	if (seedctl_etcd_open(spec, &r.e) == -1)
		return 1;
	seedctl_key(&r.e, r.key, sizeof(r.key), "live/%s/%s", r.kind, r.name);
	seedctl_key(&r.e, r.other_key, sizeof(r.other_key), "live/%s/%s", r.other, r.name);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;               /* no SA_RESTART: sleeps end at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	/* The first claim decides: refused or unreachable = exit 1. */
	if (claim(&r))
		goto out;
	while (!stop_sig) {
		nap(r.ttl * 1000 / 3);
		if (stop_sig)
			break;
		int there = r.lease ? still_there(&r) : 0;

		if (there == 1) {
			if (trouble)
				fprintf(stderr, "seedctl: register: %s: etcd reachable again, lease kept\n", r.key);
			trouble = false;
			continue;
		}
		if (there == 0) {
			/* gone (expired during a partition, or deleted), or never
			 * re-made after one: a fresh lease */
			if (r.lease) {
				fprintf(stderr, "seedctl: register: %s vanished (lease expired or record deleted): "
				        "registering again\n", r.key);
				sd_etcd_lease_revoke(r.e.c, r.lease, err, sizeof(err));
			}
			r.lease = 0;
			int cl = claim(&r);

			if (cl == 1)
				goto out;                  /* somebody else has the name now */
			trouble = cl != 0;
			continue;
		}
		trouble = true;                    /* etcd unreachable: keep trying */
	}
	ret = 0;
	if (r.lease && sd_etcd_lease_revoke(r.e.c, r.lease, err, sizeof(err)) == -1) {
		fprintf(stderr, "seedctl: register: could not revoke the lease (%s); %s goes when it expires\n",
		        err, r.key);
		ret = 1;
	} else {
		printf("unregistered %s\n", r.key);
		fflush(stdout);
	}
out:
	seedctl_etcd_close(&r.e);
	return ret;
}
