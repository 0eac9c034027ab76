/*
 * hc_escape.c — escaping of untrusted bytes for log lines and Prometheus
 * label values (see hc_escape.h).
 */
#include "hc_escape.h"

#include <string.h>

/* Appends the n bytes of seq at *pos if they fit before the NUL; false
 * (nothing written) when they do not. */
static int put(char *out, size_t room, size_t *pos, const char *seq, size_t n)
{
	if (*pos + n + 1 > room)
		return 0;
	memcpy(out + *pos, seq, n);
	*pos += n;
	return 1;
}

/* See hc_escape.h. */
char *hc_escape_log_n(char *out, size_t room, const char *in, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t pos = 0;

	if (room == 0)
		return out;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		char seq[4];
		size_t n;

		if (c >= 0x20 && c < 0x7f) {
			seq[0] = (char)c;
			n = 1;
		} else {
			seq[0] = '\\';
			seq[1] = 'x';
			seq[2] = hex[c >> 4];
			seq[3] = hex[c & 15];
			n = 4;
		}
		if (!put(out, room, &pos, seq, n))
			break;
	}
	out[pos] = '\0';
	return out;
}

/* See hc_escape.h. */
char *hc_escape_log(char *out, size_t room, const char *in)
{
	return hc_escape_log_n(out, room, in, in ? strlen(in) : 0);
}

/* See hc_escape.h. */
char *hc_escape_label(char *out, size_t room, const char *in)
{
	size_t pos = 0;

	if (room == 0)
		return out;
	for (size_t i = 0; in && in[i]; i++) {
		char seq[2] = { '\\', in[i] };
		size_t n = 2;

		if (in[i] == '\n')
			seq[1] = 'n';
		else if (in[i] != '\\' && in[i] != '"') {
			seq[0] = in[i];
			n = 1;
		}
		if (!put(out, room, &pos, seq, n))
			break;
	}
	out[pos] = '\0';
	return out;
}
