/*
 * fuzz_sd_layout.c — the etcd layout on arbitrary records: sd_build and
 * sd_text over whatever keys and values the input holds, and the round trip
 * text -> records -> directory on what built. The first line is also given
 * to sd_etcd_spec_parse.
 *
 * Input: one record per line, "KEY<TAB>VALUE"; a 0x01 byte in a value
 * stands for a newline (values with line breaks must be rejected with their
 * key). Prefix "/sg", generation "7". Corpus: tests/fuzz/corpus/sd_layout/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "seeddir/seeddir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RECS 4096

static void round_trip(const struct router_dir *d, const struct sd_record *recs, size_t n)
{
	char err[1024];
	size_t len, n2;
	char *text = sd_text("/sg", "7", recs, n, &len, err, sizeof(err));
	struct sd_record *recs2;
	struct router_dir *d2;

	if (!text)
		abort();                        /* sd_build accepted what sd_text rejects */
	if (sd_records_from_text("/sg", "8", text, len, "export", &recs2, &n2, err, sizeof(err)) == -1)
		abort();                        /* a directory that built always splits */
	d2 = sd_build("/sg", "8", recs2, n2, ROUTER_LOAD_NO_RINGS, err, sizeof(err));
	if (!d2 || router_dir_target_count(d2) != router_dir_target_count(d) ||
	    router_dir_dc_count(d2) != router_dir_dc_count(d) || router_dir_pin_count(d2) != router_dir_pin_count(d) ||
	    router_dir_pool_count(d2) != router_dir_pool_count(d) || router_dir_route_count(d2) != router_dir_route_count(d))
		abort();
	router_dir_release(&d2);
	free(recs2);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sd_record *recs = calloc(MAX_RECS, sizeof(*recs));
	char *buf = malloc(size + 1), err[1024];
	struct sd_etcd_spec spec;
	struct router_dir *d;
	size_t n = 0, pos = 0;

	if (!recs || !buf)
		abort();
	memcpy(buf, data, size);
	buf[size] = '\0';
	{
		const char *nl = memchr(buf, '\n', size);
		char first[2048];
		size_t fl = nl ? (size_t)(nl - buf) : size;

		if (fl < sizeof(first)) {
			memcpy(first, buf, fl);
			first[fl] = '\0';
			if (sd_etcd_spec_parse(first, &spec, err, sizeof(err)) == 0 &&
			    (spec.n == 0 || spec.n > SD_MAX_ENDPOINTS || spec.prefix[0] != '/'))
				abort();
		}
	}
	while (pos < size && n < MAX_RECS) {
		char *line = buf + pos, *nl = memchr(line, '\n', size - pos), *tab;
		size_t ll = nl ? (size_t)(nl - line) : size - pos;

		pos += ll + 1;
		tab = memchr(line, '\t', ll);
		if (!tab)
			continue;
		recs[n].key = line;
		recs[n].key_len = (size_t)(tab - line);
		recs[n].value = tab + 1;
		recs[n].value_len = ll - recs[n].key_len - 1;
		for (size_t i = 0; i < recs[n].value_len; i++)
			if (tab[1 + i] == 0x01)
				tab[1 + i] = '\n';
		n++;
	}
	d = sd_build("/sg", "7", recs, n, 0, err, sizeof(err));
	if (d) {
		round_trip(d, recs, n);
		router_dir_release(&d);
	} else if (!err[0] || strchr(err, '\n'))
		abort();                        /* every error is one "KEY: message" line */
	free(buf);
	free(recs);
	return 0;
}
