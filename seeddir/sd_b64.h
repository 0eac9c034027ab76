/*
 * sd_b64.h — base64, the etcd v3 JSON gateway's encoding of keys, values
 * and range ends. One implementation for every etcd client of seeddir.
 */
#ifndef SEEDGATE_SD_B64_H
#define SEEDGATE_SD_B64_H

#include <stddef.h>

/* len bytes -> malloc'd, NUL-terminated, padded text; NULL when out of
 * memory. */
char *sd_b64_encode(const char *in, size_t len);
/* Decodes len characters (padding optional, nothing after it is read)
 * into out, which must hold len / 4 * 3 + 3 bytes; *outlen set. -1 on a
 * character outside the alphabet. */
int sd_b64_decode(const char *in, size_t len, char *out, size_t *outlen);

#endif /* SEEDGATE_SD_B64_H */
