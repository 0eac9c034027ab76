/*
 * load_pool.c — encodes the load generator's requests once, before the run
 * (see load_pool.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/load_pool.h"
#include "spop.h"

/* A random version-4 UUID in canonical lower-case text form. */
static void uuid_text(uint64_t *rng, char out[37])
{
	uint8_t b[16];
	for (unsigned i = 0; i < 16; i += 8) {
		uint64_t r = load_rand(rng);
		memcpy(b + i, &r, 8);
	}
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}

/* Appends message `name` with args path (STRING), host (STRING) and src
 * (IPV4, as HAProxy sends `src`) to the arena as entry e. The arena has room
 * for LOAD_POOL_MAX_PAYLOAD per entry. 0, or -1 if it does not fit. */
static int payload_encode(struct load_pool *p, struct load_payload *e, const char *name, const char *path,
			  const char *host, uint32_t src)
{
	struct spop_arg args[3];

	args[0].name = "path"; args[0].name_len = 4;
	args[0].value = spop_data_str(path, strlen(path));
	args[1].name = "host"; args[1].name_len = 4;
	args[1].value = spop_data_str(host, strlen(host));
	args[2].name = "src"; args[2].name_len = 3;
	args[2].value.type = SPOP_DATA_IPV4;
	args[2].value.v.ipv4[0] = (uint8_t)(src >> 24);
	args[2].value.v.ipv4[1] = (uint8_t)(src >> 16);
	args[2].value.v.ipv4[2] = (uint8_t)(src >> 8);
	args[2].value.v.ipv4[3] = (uint8_t)src;
	int n = spop_message_encode(name, strlen(name), args, 3, p->arena + p->arena_len, LOAD_POOL_MAX_PAYLOAD);
	if (n == -1)
		return -1;
	e->off = (uint32_t)p->arena_len;
	e->len = (uint16_t)n;
	p->arena_len += (size_t)n;
	if ((size_t)n > p->max_len)
		p->max_len = (size_t)n;
	return 0;
}

/* A random source address in 10.0.0.0/8. */
static uint32_t random_src(uint64_t *rng)
{
	return 0x0a000000u | (uint32_t)(load_rand(rng) & 0xffffff);
}

/* Reads up to p->size requests from the mix file. 0 / -1 with err. */
static int pool_read_mix(struct load_pool *p, const struct load_pool_config *cfg, uint64_t *rng,
			 char *err, size_t errlen)
{
	char line[900], path[800], host[256];
	unsigned n = 0, lineno = 0;
	int ret = -1;
	FILE *f = fopen(cfg->mix_file, "r");

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", cfg->mix_file, strerror(errno));
		return -1;
	}
	while (n < p->size && fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		int k = sscanf(line, "%799s %255s", path, host);
		if (k < 1 || path[0] == '#')
			continue;
		if (payload_encode(p, &p->entry[n++], cfg->message, path, k == 2 ? host : cfg->host,
				   random_src(rng)) == -1) {
			snprintf(err, errlen, "%s:%u: request too large", cfg->mix_file, lineno);
			goto out_close;
		}
	}
	if (n == 0) {
		snprintf(err, errlen, "%s: no requests", cfg->mix_file);
		goto out_close;
	}
	p->size = n;
	ret = 0;
out_close:
	fclose(f);
	return ret;
}

/* The built-in mix: project_pct % of "/<uuid>/files/notebook.ipynb" (ids
 * random, or drawn from a fixed set of id_set), the rest "/other". */
static int pool_make_mix(struct load_pool *p, const struct load_pool_config *cfg, uint64_t *rng,
			 char *err, size_t errlen)
{
	char (*ids)[37] = NULL;
	int ret = -1;

	if (cfg->id_set > 0) {
		ids = calloc(cfg->id_set, sizeof(*ids));
		if (ids == NULL) {
			snprintf(err, errlen, "out of memory for %u ids", cfg->id_set);
			return -1;
		}
		for (unsigned i = 0; i < cfg->id_set; i++)
			uuid_text(rng, ids[i]);
	}
	for (unsigned i = 0; i < p->size; i++) {
		char path[128], id[37];
		if (load_rand(rng) % 100 < cfg->project_pct) {
			if (ids != NULL)
				memcpy(id, ids[load_rand(rng) % cfg->id_set], sizeof(id));
			else
				uuid_text(rng, id);
			snprintf(path, sizeof(path), "/%s/files/notebook.ipynb", id);
		} else {
			snprintf(path, sizeof(path), "/other");
		}
		if (payload_encode(p, &p->entry[i], cfg->message, path, cfg->host, random_src(rng)) == -1) {
			snprintf(err, errlen, "request too large (message name or host too long)");
			goto out_free_ids;
		}
	}
	ret = 0;
out_free_ids:
	free(ids);
	return ret;
}

/* Allocates the arena for the worst case, encodes, then shrinks it to
 * what was used. */
int load_pool_build(struct load_pool *p, const struct load_pool_config *cfg, char *err, size_t errlen)
{
	uint64_t rng = 0x9E3779B97F4A7C15ull ^ cfg->seed;
	int rc;

	memset(p, 0, sizeof(*p));
	p->size = cfg->size;
	if (cfg->id_set > p->size)
		p->size = cfg->id_set;
	if (p->size == 0) {
		snprintf(err, errlen, "empty request pool");
		return -1;
	}
	p->entry = calloc(p->size, sizeof(*p->entry));
	p->arena = malloc((size_t)p->size * LOAD_POOL_MAX_PAYLOAD);
	if (p->entry == NULL || p->arena == NULL) {
		snprintf(err, errlen, "out of memory for %u requests", p->size);
		goto out_free;
	}
	if (cfg->mix_file != NULL)
		rc = pool_read_mix(p, cfg, &rng, err, errlen);
	else
		rc = pool_make_mix(p, cfg, &rng, err, errlen);
	if (rc == -1)
		goto out_free;
	uint8_t *packed = realloc(p->arena, p->arena_len);
	if (packed != NULL)
		p->arena = packed;
	p->mask = (p->size & (p->size - 1)) == 0 ? p->size - 1 : 0;
	return 0;
out_free:
	load_pool_free(p);
	return -1;
}

void load_pool_free(struct load_pool *p)
{
	free(p->entry);
	free(p->arena);
	memset(p, 0, sizeof(*p));
}
