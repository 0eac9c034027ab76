/*
 * fuzz_hc_servers.c — healthcheckd's reading of HAProxy's "show servers
 * state" answer (hcd_servers_sync, hc_servers.c), which decides what servers
 * to add, remove and fix after a (re)connect.
 *
 * Input: arbitrary bytes as the answer. The directory is fixed (two
 * datacenters, hubs, nodes, a hostname node); the runtime API client is
 * replaced by stubs that check every command: it names a backend of the
 * directory and a server, never removes the nodes backends' backup, and adds
 * only servers of the directory, each at most once.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hc_backends.h"
#include "hc_daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char seed[] =
	"replicas 2\ndc east\ndc west\n"
	"hub h1 127.0.0.1:5001 dc=east weight=10\nhub h2 127.0.0.1:5002 dc=east state=drain\n"
	"hub h3 [::1]:5003 dc=west\n"
	"node n1 127.0.0.1:6001 dc=east\nnode n2 127.0.0.1:6002 dc=east weight=20\n"
	"node n3 node3.example:6003 dc=west\nnode n4 10.0.0.4:6004 dc=west state=drain\n"
	"pool files\nserver f1 127.0.0.1:7001 dc=east pool=files\nserver f2 127.0.0.1:7002 dc=west pool=files\n"
	"route /static files\n";

static struct router_dir *dir;
static unsigned added[16];

/* ------------------------------------------------------- stubs of healthcheckd */

void hcd_log(const char *fmt, ...) { (void)fmt; }
bool hcd_haproxy_ready(const struct hcd_haproxy *h) { (void)h; return true; }
const char *hcd_haproxy_path(const struct hcd_haproxy *h) { (void)h; return "fuzz"; }
const char *hcd_haproxy_state_word(const struct hcd_target *t) { (void)t; return "ready"; }
bool hcd_haproxy_forget_removal(struct hcd_haproxy *h, const char *backend, const char *name)
{
	(void)h; (void)backend; (void)name;
	return false;
}

int hcd_addr_parse_ip(const char *host, uint16_t port, struct sockaddr_storage *sa, socklen_t *salen)
{
	struct in6_addr a6;
	struct in_addr a4;

	(void)port; (void)sa;
	*salen = 0;
	return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1 ? 0 : -1;
}

/* backend is one of the directory's */
static void check_backend(const char *be)
{
	if (!hc_backend_ours(dir, be))
		abort();
}

void hcd_haproxy_remove_server(struct hcd_haproxy *h, const char *backend, const char *name)
{
	int j = router_dir_target_find(dir, name);

	(void)h;
	check_backend(backend);
	if (strcmp(name, HC_FALLBACK_SERVER) == 0 || !*name)
		abort();
	/* a server of the directory is only removed from a backend it is not in */
	if (j >= 0 && strcmp(hc_backend_of(dir, router_dir_target(dir, (unsigned)j)), backend) == 0)
		abort();
}

static void check_command(const char *fmt, va_list ap)
{
	char line[512], be[128], name[64];
	const char *slash, *end;
	int j;

	vsnprintf(line, sizeof(line), fmt, ap);
	slash = strchr(line, '/');
	if (!slash)
		abort();
	end = slash + strcspn(slash, " ");
	{
		const char *start = slash;

		while (start > line && start[-1] != ' ')
			start--;
		snprintf(be, sizeof(be), "%.*s", (int)(slash - start), start);
		snprintf(name, sizeof(name), "%.*s", (int)(end - slash - 1), slash + 1);
	}
	check_backend(be);
	j = router_dir_target_find(dir, name);
	if (j < 0)
		abort();          /* only servers of the directory are touched */
	if (strncmp(line, "add server ", 11) == 0 && ++added[j] > 1)
		abort();          /* each added once */
}

void hcd_haproxy_command(struct hcd_haproxy *h, const char *fmt, ...)
{
	va_list ap;

	(void)h;
	if (strncmp(fmt, "enable dynamic-cookie", 21) == 0)
		return;           /* names a backend only */
	va_start(ap, fmt);
	check_command(fmt, ap);
	va_end(ap);
}

void hcd_haproxy_command_flags(struct hcd_haproxy *h, unsigned flags, const char *fmt, ...)
{
	va_list ap;

	(void)h; (void)flags;
	va_start(ap, fmt);
	check_command(fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ target */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hcd d;
	char err[256];

	if (!dir) {
		dir = router_dir_parse_flags(seed, sizeof(seed) - 1, "fuzz.conf", ROUTER_LOAD_NO_RINGS, err, sizeof(err));
		if (!dir)
			abort();
	}
	memset(&d, 0, sizeof(d));
	memset(added, 0, sizeof(added));
	d.dir = dir;
	hcd_servers_sync(&d, NULL, (const char *)data, size);
	return 0;
}
