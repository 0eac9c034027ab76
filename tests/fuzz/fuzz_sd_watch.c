/*
 * fuzz_sd_watch.c — what the etcd sync engine reads from etcd: watch stream
 * bytes (newline-separated JSON messages, in two pieces to exercise partial
 * lines), one range answer for each listing step, and base64.
 *
 * Nothing here talks to a network: requests the engine would send next are
 * queued on a loop that never runs, and dropped with the engine.
 */
#include <ev.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "seeddir/sd_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_listed(void *udata, int64_t rev, const char *gen, struct sd_recs *recs)
{
	(void)udata;
	(void)rev;
	if (strlen(gen) > 20)
		abort();
	for (size_t i = 0; i < recs->n; i++)     /* finished: every pointer inside the pool */
		if (recs->rec[i].key < recs->pool || recs->rec[i].value + recs->rec[i].value_len > recs->pool + recs->plen)
			abort();
	sd_recs_free(recs);
}

static void on_unchanged(void *udata, int64_t rev)
{
	(void)udata;
	(void)rev;
}

static void on_failed(void *udata, const char *msg, bool connectivity)
{
	(void)udata;
	(void)connectivity;
	if (!msg)
		abort();
}

static void on_connected(void *udata, bool up, const char *endpoint)
{
	(void)udata;
	(void)up;
	(void)endpoint;
}

static const struct sd_sync_ops ops = { on_listed, on_unchanged, on_failed, on_connected };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ev_loop *loop;
	struct sd_etcd_spec spec = { .n = 1 };
	const char *in = (const char *)data;
	size_t cut = size ? data[0] % (size + 1) : 0, outlen;
	char err[128], *text, *out;
	struct sd_sync *y;

	if (!loop)
		loop = ev_loop_new(EVFLAG_AUTO);
	strcpy(spec.endpoint[0], "http://127.0.0.1:1");
	strcpy(spec.prefix, "/sg");

	y = sd_sync_new(loop, &spec, 0.03, &ops, NULL, err, sizeof(err));
	if (!y)
		return 0;
	if (sd_sync_feed_watch(y, in, cut) == 0)
		sd_sync_feed_watch(y, in + cut, size - cut);
	sd_sync_free(&y);

	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';           /* the HTTP layer hands NUL-terminated bodies */
	for (int step = 0; step <= 20; step += 10) {   /* current, a slice, live/ */
		y = sd_sync_new(loop, &spec, 0.03, &ops, NULL, err, sizeof(err));
		if (!y)
			break;
		sd_sync_feed_list(y, step, text, size);
		sd_sync_free(&y);
	}

	out = malloc(size / 4 * 3 + 4);
	if (out && sd_b64_decode(text, size, out, &outlen) == 0) {
		char *again = sd_b64_encode(out, outlen);

		if (outlen > size / 4 * 3 + 3)
			abort();
		free(again);
	}
	free(out);
	free(text);
	return 0;
}
