/*
 * hc_servers.c — HAProxy's servers follow the seed directory, live.
 *
 * Every hub, node and pool server of the directory is a server of
 * hubs_<dc> / nodes_<dc> / pool_<pool>_<dc>
 * (hc_backends.h says which, and with what weight: the same rules as the
 * file `seedctl haproxy` writes). When the directory changes, the
 * difference between the old and the new snapshot is applied through the
 * runtime API, without a reload:
 *
 *   added       add server B/S ADDR weight W; enable server B/S
 *               (2.6 adds servers in maintenance) or state drain; hubs:
 *               "enable dynamic-cookie backend B" gives it its cookie
 *   removed     set server B/S state maint; del server B/S (hc_haproxy.c
 *               retries while connections remain)
 *   re-weighted set server B/S weight W (hubs; drained hubs weigh 0)
 *   re-addressed set server B/S addr IP port P (IP literals; hostnames go
 *               through healthcheckd's resolver, hc_target.c)
 *   moved       (other dc or kind) removed from one backend, added to the other
 *
 * Drain and health states stay hc_target.c's ("set server B/S state").
 *
 * After a (re)connect, the HAProxy process may have started from an older
 * file, and lacks servers added since (or still has removed ones): its
 * "show servers state" is compared with the current directory instead.
 *
 * Servers added at run time have no address resolution in HAProxy: a
 * hostname target is added with the address healthcheckd resolved, or, not
 * resolved yet, with 0.0.0.0 and in maintenance until the resolver's "set
 * server addr" and the first verdict.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hc_backends.h"
#include "hc_daemon.h"

/* Counts for the log line of one apply or sync. */
struct tally {
	unsigned added, removed, updated;
};

/* healthcheckd's target of that name in the table of d->dir, or NULL. */
static const struct hcd_target *target_named(const struct hcd *d, const char *name)
{
	int j = d->dir ? router_dir_target_find(d->dir, name) : -1;

	return j >= 0 && (unsigned)j < d->ntargets ? d->targets[j] : NULL;
}

static bool is_ip_literal(const struct router_target *rt)
{
	struct sockaddr_storage sa;
	socklen_t len;

	return hcd_addr_parse_ip(rt->host, rt->port, &sa, &len) == 0;
}

/* Adds rt's server to its backend and gives it its state. */
static void server_add(struct hcd *d, struct hcd_haproxy *h, const struct router_dir *dir,
                       const struct router_target *rt)
{
	const char *be = hc_backend_of(dir, rt);
	const struct hcd_target *t = target_named(d, rt->name);
	bool ip = is_ip_literal(rt);
	bool resolved = !ip && t && t->hostname && t->have_addr && strcmp(t->host, rt->host) == 0 &&
	                t->port == rt->port;
	bool pending = hcd_haproxy_forget_removal(h, be, rt->name);
	char placeholder[32];
	const char *state;

	/* An unresolved hostname: HAProxy keeps a server added with one without
	 * an address family, and then refuses "set server addr" for it; so it
	 * gets 0.0.0.0 (in maintenance, it is never used) until the resolver's
	 * address arrives (hcd_target_addr_changed) */
	snprintf(placeholder, sizeof(placeholder), "0.0.0.0:%u", rt->port);
	hcd_haproxy_command_flags(h, pending ? HCD_CMD_EXISTS_OK : 0, "add server %s/%s %s weight %u " HC_SERVER_OPTS, be,
	                          rt->name, ip ? rt->addr : resolved ? t->addr : placeholder,
	                          hc_server_weight(rt));
	if (pending) {
		/* its removal was under way: it may still be there, with old settings */
		hcd_haproxy_command(h, "set server %s/%s weight %u", be, rt->name, hc_server_weight(rt));
		if (ip)
			hcd_haproxy_command(h, "set server %s/%s addr %s port %u", be, rt->name, rt->host, rt->port);
	}
	if (hc_kind_balanced(rt->kind))
		hcd_haproxy_command(h, "enable dynamic-cookie backend %s", be);
	/* the verdict healthcheckd has (a target moved from another backend),
	 * else up as the route agents assume until the first check */
	if (!ip && !resolved)
		state = "maint";
	else if (t && t->published)
		state = hcd_haproxy_state_word(t);
	else
		state = rt->drain ? "drain" : "ready";
	if (strcmp(state, "ready") == 0)
		hcd_haproxy_command(h, "enable server %s/%s", be, rt->name);
	else
		hcd_haproxy_command(h, "set server %s/%s state %s", be, rt->name, state);
}

/* Sends what differs between a server's wanted and actual weight/address.
 * addr NULL: unknown (no address change). Returns whether anything was sent. */
static bool server_update(struct hcd_haproxy *h, const char *be, const struct router_target *rt,
                          unsigned weight, const char *addr, unsigned port)
{
	bool sent = false;

	if (weight != hc_server_weight(rt)) {
		hcd_haproxy_command(h, "set server %s/%s weight %u", be, rt->name, hc_server_weight(rt));
		sent = true;
	}
	if (addr && is_ip_literal(rt) && (strcmp(addr, rt->host) != 0 || port != rt->port)) {
		hcd_haproxy_command(h, "set server %s/%s addr %s port %u", be, rt->name, rt->host, rt->port);
		if (hc_kind_balanced(rt->kind))
			hcd_haproxy_command(h, "enable dynamic-cookie backend %s", be);
		sent = true;
	}
	return sent;
}

static void log_tally(const struct hcd_haproxy *h, const char *what, const struct tally *n)
{
	if (n->added || n->removed || n->updated)
		hcd_log("haproxy %s: %s: %u server(s) added, %u removed, %u updated", hcd_haproxy_path(h), what,
		        n->added, n->removed, n->updated);
}

/* See hc_daemon.h. */
void hcd_servers_apply(struct hcd *d, const struct router_dir *old, const struct router_dir *new_dir)
{
	if (!old || !new_dir || old == new_dir)
		return;
	for (unsigned c = 0; c < d->opts.n_haproxy; c++) {
		struct hcd_haproxy *h = d->haproxy[c];
		struct tally n = { 0, 0, 0 };

		if (!hcd_haproxy_ready(h))
			continue;      /* the sync after (re)connecting uses the new directory */
		for (unsigned j = 0; j < router_dir_target_count(old); j++) {
			const struct router_target *ot = router_dir_target(old, j);
			int i = router_dir_target_find(new_dir, ot->name);

			if (i < 0 || strcmp(hc_backend_of(old, ot),
			                    hc_backend_of(new_dir, router_dir_target(new_dir, (unsigned)i))) != 0) {
				hcd_haproxy_remove_server(h, hc_backend_of(old, ot), ot->name);
				n.removed++;
			}
		}
		for (unsigned i = 0; i < router_dir_target_count(new_dir); i++) {
			const struct router_target *rt = router_dir_target(new_dir, i);
			const char *be = hc_backend_of(new_dir, rt);
			int j = router_dir_target_find(old, rt->name);
			const struct router_target *ot = j >= 0 ? router_dir_target(old, (unsigned)j) : NULL;

			if (!ot || strcmp(hc_backend_of(old, ot), be) != 0) {
				server_add(d, h, new_dir, rt);
				n.added++;
			} else if (server_update(h, be, rt, hc_server_weight(ot), ot->host, ot->port)) {
				n.updated++;
			}
		}
		log_tally(h, "seed directory changed", &n);
	}
}

/* Splits one line into at most max space-separated fields (in place). */
static unsigned split_fields(char *line, char **f, unsigned max)
{
	unsigned n = 0;
	char *save = NULL;

	for (char *w = strtok_r(line, " ", &save); w && n < max; w = strtok_r(NULL, " ", &save))
		f[n++] = w;
	return n;
}

/* show servers state (format 1): be_id be_name srv_id srv_name srv_addr
 * srv_op_state srv_admin_state srv_uweight srv_iweight ... srv_fqdn srv_port
 * ...: fields 1, 3, 4, 7 and 18 are what is compared. */
enum { SS_BE = 1, SS_NAME = 3, SS_ADDR = 4, SS_UWEIGHT = 7, SS_PORT = 18, SS_MIN = 19 };

/* See hc_daemon.h. */
void hcd_servers_sync(struct hcd *d, struct hcd_haproxy *h, const char *state, size_t len)
{
	const struct router_dir *dir = d->dir;
	unsigned n = dir ? router_dir_target_count(dir) : 0, seen_count = 0;
	bool *seen = calloc(n ? n : 1, sizeof(*seen));
	char *text = malloc(len + 1), *save = NULL;
	struct tally t = { 0, 0, 0 };

	if (!seen || !text || !dir) {
		if (dir)
			hcd_log("haproxy %s: out of memory comparing its servers", hcd_haproxy_path(h));
		free(seen);
		free(text);
		return;
	}
	memcpy(text, state, len);
	text[len] = '\0';
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[SS_MIN];
		const struct router_target *rt;
		int j;

		if (line[0] == '#' || split_fields(line, f, SS_MIN) < SS_MIN || !hc_backend_ours(dir, f[SS_BE]) ||
		    strcmp(f[SS_NAME], HC_FALLBACK_SERVER) == 0)
			continue;
		j = router_dir_target_find(dir, f[SS_NAME]);
		rt = j >= 0 ? router_dir_target(dir, (unsigned)j) : NULL;
		if (!rt || strcmp(hc_backend_of(dir, rt), f[SS_BE]) != 0) {
			hcd_haproxy_remove_server(h, f[SS_BE], f[SS_NAME]);
			t.removed++;
			continue;
		}
		if (seen[j])
			continue;
		seen[j] = true;
		seen_count++;
		if (server_update(h, f[SS_BE], rt, (unsigned)strtoul(f[SS_UWEIGHT], NULL, 10), f[SS_ADDR],
		                  (unsigned)strtoul(f[SS_PORT], NULL, 10)))
			t.updated++;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!seen[i]) {
			server_add(d, h, dir, router_dir_target(dir, i));
			t.added++;
		}
	}
	log_tally(h, "servers the directory does not match (configuration file older than the directory)", &t);
	free(seen);
	free(text);
}
