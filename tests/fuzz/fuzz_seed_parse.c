/*
 * fuzz_seed_parse.c — the seed directory parser on arbitrary bytes, then
 * placement and decisions on whatever parsed, and path classification of
 * the raw input. Every route prefix that parsed is no project path, and a
 * request for exactly it goes to its own pool (or, none up, to the hubs
 * with why no-pool). Corpus: tests/fuzz/corpus/seed_parse/ (valid files and one
 * of each error kind).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	uint8_t id[16];
	struct router_dir *d;

	(void)router_classify_path((const char *)data, size, id);
	d = router_dir_parse((const char *)data, size, "fuzz.conf", err, sizeof(err));
	if (!d) {
		if (strncmp(err, "fuzz.conf:", 10) != 0)
			abort();                 /* every parse error names file:line */
		return 0;
	}
	{
		unsigned n = router_dir_target_count(d), list[ROUTER_PREF_MAX];
		uint8_t *down = calloc(n + 1, 1);
		struct router_decision dec;
		static const char path[] = "/2f1c3d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f/x";

		if (!down)
			abort();
		for (unsigned i = 0; i < n; i += 2)
			down[i] = 1;
		for (unsigned dc = 0; dc < router_dir_dc_count(d); dc++) {
			size_t k;

			memset(id, 0, sizeof(id));
			memcpy(id, data, size < 16 ? size : 16);
			k = router_preference(d, id, dc, list, ROUTER_PREF_MAX, NULL);
			for (size_t i = 0; i < k; i++)
				if (list[i] >= n)
					abort();
			if (router_decide(d, dc, path, sizeof(path) - 1, down, &dec) != 0 || !dec.backend)
				abort();
			if (router_decide(d, dc, (const char *)data, size, NULL, &dec) != 0 || !dec.backend)
				abort();
		}
		for (unsigned i = 0; i < n; i++)
			if (router_dir_target_find(d, router_dir_target(d, i)->name) != (int)i)
				abort();
		for (unsigned r = 0; r < router_dir_route_count(d); r++) {
			const char *prefix, *m;
			int pool = router_dir_route(d, r, &prefix);
			size_t plen = strlen(prefix);

			if (pool < 0 || (unsigned)pool >= router_dir_pool_count(d) || router_classify_path(prefix, plen, id) ||
			    router_route_match(d, prefix, plen, &m) != pool || strcmp(m, prefix) != 0)
				abort();
			if (router_decide(d, 0, prefix, plen, down, &dec) != 0 || dec.pool != pool || dec.is_project ||
			    (dec.why != ROUTER_WHY_POOL && dec.why != ROUTER_WHY_NO_POOL && dec.why != ROUTER_WHY_NO_HUB))
				abort();
		}
		free(down);
	}
	router_dir_release(&d);
	return 0;
}
