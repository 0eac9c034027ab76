/*
 * demo-server — the small hub/node server of the demo, the tests and the
 * benchmarks.
 *
 * It answers every HTTP/1.1 request with 200, the header `X-Served-By: NAME`
 * and a one-line body naming itself, the request path and X-Forwarded-For,
 * so that a test (or a person with curl) sees at once which hub or node
 * HAProxy chose. Keep-alive and pipelining are supported: every complete
 * request in the input buffer is answered, the answers are appended to one
 * output buffer and written with one write(). A websocket upgrade (RFC 6455)
 * turns the connection into an echo server for text/binary frames.
 *
 * A control path lets the health-check tests change how the server answers,
 * without restarting it:
 *   POST /__sg/mode?status=500   every other request gets 500
 *   POST /__sg/mode?status=hang  requests are read and never answered
 *   POST /__sg/mode?status=close connections are closed without an answer
 *   POST /__sg/mode?status=ok    back to normal
 * (any method works; `--fail-status N` starts the server in a failing mode).
 * /__sg/ requests are always answered, so a test can always switch back.
 *
 * One thread, one libev loop, no allocation per request: each connection
 * owns fixed input and output buffers, recycled through a free list.
 * SIGTERM/SIGINT exit 0. The server writes no pid file (demo.sh does).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/evp.h>

#define DS_MAX_LISTEN   16
#define DS_IN_SIZE      16384        /* one request head, or one websocket frame */
#define DS_OUT_SIZE     65536        /* answers of one batch of pipelined requests */
#define DS_OUT_RESERVE  2048         /* stop parsing when less than this is free */
#define DS_CONN_MAGIC   0x64736331u  /* "dsc1": checked on every w->data */
#define DS_NAME_MAX     64
#define DS_PATH_ECHO    200          /* bytes of path echoed in the body */
#define DS_XFF_ECHO     100          /* bytes of X-Forwarded-For echoed */

static const char ds_ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* How the server answers ordinary requests (set by /__sg/mode). */
enum ds_mode { DS_MODE_OK, DS_MODE_STATUS, DS_MODE_HANG, DS_MODE_CLOSE };

struct ds_server {
	char name[DS_NAME_MAX];
	enum ds_mode mode;
	int fail_status;
	struct ev_loop *loop;
	ev_io listeners[DS_MAX_LISTEN];
	int nlisten;
	struct ds_conn *free_list;   /* recycled connections */
	unsigned long long requests;
};

struct ds_conn {
	uint32_t magic;
	int fd;
	ev_io rio, wio;
	struct ds_server *srv;
	struct ds_conn *next_free;
	bool websocket;
	bool close_after_write;     /* Connection: close, HTTP/1.0, fatal error */
	bool hung;                  /* hang mode: read and discard, never answer */
	size_t body_left;           /* request body bytes still to skip */
	size_t in_len;
	size_t out_off, out_len;
	char in[DS_IN_SIZE];
	char out[DS_OUT_SIZE];
};

static struct ds_server server;

/* Prints usage to f. */
static void ds_usage(FILE *f)
{
	fprintf(f,
		"usage: demo-server --name NAME --listen HOST:PORT [--listen HOST:PORT ...]\n"
		"                   [--fail-status N|hang|close] [--help]\n"
		"Answers every HTTP request 200 with X-Served-By: NAME (body: name, path,\n"
		"X-Forwarded-For), GET /health 200, websocket upgrade then echo.\n"
		"Control: POST /__sg/mode?status=500|hang|close|ok changes later answers.\n"
		"SIGTERM or SIGINT exits 0.\n");
}

/* Parses a mode word ("ok", "hang", "close" or a status code 100..599) into
 * the server. Returns 0, or -1 if the word is none of these. */
static int ds_set_mode(struct ds_server *s, const char *word, size_t len)
{
	if (len == 2 && memcmp(word, "ok", 2) == 0) {
		s->mode = DS_MODE_OK;
		return 0;
	}
	if (len == 4 && memcmp(word, "hang", 4) == 0) {
		s->mode = DS_MODE_HANG;
		return 0;
	}
	if (len == 5 && memcmp(word, "close", 5) == 0) {
		s->mode = DS_MODE_CLOSE;
		return 0;
	}
	if (len == 3 && word[0] >= '1' && word[0] <= '5' &&
	    word[1] >= '0' && word[1] <= '9' && word[2] >= '0' && word[2] <= '9') {
		s->fail_status = (word[0] - '0') * 100 + (word[1] - '0') * 10 + (word[2] - '0');
		s->mode = s->fail_status == 200 ? DS_MODE_OK : DS_MODE_STATUS;
		return 0;
	}
	return -1;
}

/* Returns the reason phrase for the few statuses this server sends. */
static const char *ds_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 431: return "Request Header Fields Too Large";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default:  return status >= 500 ? "Server Error" : "Status";
	}
}

/* Appends len bytes to the connection's output buffer. The caller made sure
 * there is room (DS_OUT_RESERVE bytes are always free when a request is
 * parsed); if there is not, the bytes are dropped and the connection closes. */
static void ds_out_put(struct ds_conn *c, const void *p, size_t len)
{
	if (c->out_len + len > DS_OUT_SIZE) {
		c->close_after_write = true;
		return;
	}
	memcpy(c->out + c->out_len, p, len);
	c->out_len += len;
}

/* Appends one complete HTTP response: status, X-Served-By, the body (which
 * is omitted for HEAD but still counted in Content-Length). */
static void ds_respond(struct ds_conn *c, int status, const char *body, size_t body_len, bool head)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nX-Served-By: %s\r\nContent-Type: text/plain\r\n"
			 "Content-Length: %zu\r\n%s\r\n",
			 status, ds_reason(status), c->srv->name, body_len,
			 c->close_after_write ? "Connection: close\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(hdr)) {
		c->close_after_write = true;
		return;
	}
	ds_out_put(c, hdr, (size_t)n);
	if (!head)
		ds_out_put(c, body, body_len);
}

/* Case-insensitive check that the header line [p, p+len) is named `name`;
 * on success the value, trimmed, goes to val and vlen. */
static bool ds_header_is(const char *p, size_t len, const char *name, const char **val, size_t *vlen)
{
	size_t nl = strlen(name);
	if (len <= nl || p[nl] != ':' || strncasecmp(p, name, nl) != 0)
		return false;
	const char *v = p + nl + 1, *end = p + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*val = v;
	*vlen = (size_t)(end - v);
	return true;
}

/* True if the comma-separated header value contains token (any case). */
static bool ds_has_token(const char *v, size_t vlen, const char *token)
{
	size_t tl = strlen(token);
	for (size_t i = 0; i + tl <= vlen; i++)
		if (strncasecmp(v + i, token, tl) == 0)
			return true;
	return false;
}

/* Writes the 28-character Sec-WebSocket-Accept for key into out[29]:
 * base64(SHA1(key + GUID)), RFC 6455 section 4.2.2. Returns 0 or -1. */
static int ds_ws_accept(const char *key, size_t klen, char out[29])
{
	char buf[128 + sizeof(ds_ws_guid)];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (klen == 0 || klen > 128)
		return -1;
	memcpy(buf, key, klen);
	memcpy(buf + klen, ds_ws_guid, sizeof(ds_ws_guid) - 1);
	if (!EVP_Digest(buf, klen + sizeof(ds_ws_guid) - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
		return -1;
	if (EVP_EncodeBlock((unsigned char *)out, md, 20) != 28)
		return -1;
	return 0;
}

/* What the request head says, as far as this server cares. */
struct ds_request {
	const char *method, *path, *xff, *ws_key;
	size_t method_len, path_len, xff_len, ws_key_len;
	size_t content_length;
	bool http10, conn_close, conn_keepalive, upgrade_ws, chunked;
};

/* Parses the request head [p, p+len) (without the final blank line).
 * Returns 0, or -1 on a malformed request line. */
static int ds_parse_head(const char *p, size_t len, struct ds_request *r)
{
	const char *end = p + len, *eol = memchr(p, '\n', len);
	const char *sp1, *sp2;

	memset(r, 0, sizeof(*r));
	if (!eol)
		eol = end;
	sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (!sp1)
		return -1;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2)
		return -1;
	r->method = p;
	r->method_len = (size_t)(sp1 - p);
	r->path = sp1 + 1;
	r->path_len = (size_t)(sp2 - sp1 - 1);
	r->http10 = (eol - sp2 >= 9 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0);

	for (const char *line = eol + 1; line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *lend = nl ? nl : end;
		size_t llen = (size_t)(lend - line);
		const char *v;
		size_t vl;

		if (llen && line[llen - 1] == '\r')
			llen--;
		if (ds_header_is(line, llen, "content-length", &v, &vl)) {
			r->content_length = 0;
			for (size_t i = 0; i < vl && v[i] >= '0' && v[i] <= '9' && i < 12; i++)
				r->content_length = r->content_length * 10 + (size_t)(v[i] - '0');
		} else if (ds_header_is(line, llen, "connection", &v, &vl)) {
			r->conn_close = ds_has_token(v, vl, "close");
			r->conn_keepalive = ds_has_token(v, vl, "keep-alive");
		} else if (ds_header_is(line, llen, "upgrade", &v, &vl)) {
			r->upgrade_ws = ds_has_token(v, vl, "websocket");
		} else if (ds_header_is(line, llen, "sec-websocket-key", &v, &vl)) {
			r->ws_key = v;
			r->ws_key_len = vl;
		} else if (ds_header_is(line, llen, "x-forwarded-for", &v, &vl)) {
			r->xff = v;
			r->xff_len = vl;
		} else if (ds_header_is(line, llen, "transfer-encoding", &v, &vl)) {
			r->chunked = ds_has_token(v, vl, "chunked");
		}
		line = lend + 1;
	}
	return 0;
}

/* Handles the control path /__sg/mode?status=WORD and answers it. */
static void ds_control(struct ds_conn *c, const struct ds_request *r)
{
	const char *q = memchr(r->path, '?', r->path_len);
	const char *key = "status=";
	char body[96];
	int n;

	if (q) {
		const char *v = q + 1, *end = r->path + r->path_len;
		if ((size_t)(end - v) > strlen(key) && memcmp(v, key, strlen(key)) == 0) {
			v += strlen(key);
			const char *amp = memchr(v, '&', (size_t)(end - v));
			if (ds_set_mode(c->srv, v, (size_t)((amp ? amp : end) - v)) == -1) {
				ds_respond(c, 400, "bad status\n", 11, false);
				return;
			}
		}
	}
	switch (c->srv->mode) {
	case DS_MODE_OK:     n = snprintf(body, sizeof(body), "mode ok\n"); break;
	case DS_MODE_HANG:   n = snprintf(body, sizeof(body), "mode hang\n"); break;
	case DS_MODE_CLOSE:  n = snprintf(body, sizeof(body), "mode close\n"); break;
	default:             n = snprintf(body, sizeof(body), "mode %d\n", c->srv->fail_status); break;
	}
	ds_respond(c, 200, body, (size_t)n, false);
}

/* Answers one parsed request according to the server's mode. Returns false
 * if the connection must stop processing input (hang, close, upgrade). */
static bool ds_answer(struct ds_conn *c, const struct ds_request *r)
{
	bool head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
	char body[DS_NAME_MAX + DS_PATH_ECHO + DS_XFF_ECHO + 32];
	int n;

	c->srv->requests++;
	if (r->conn_close || (r->http10 && !r->conn_keepalive))
		c->close_after_write = true;

	if (r->path_len >= 6 && memcmp(r->path, "/__sg/", 6) == 0) {
		ds_control(c, r);
		return !c->close_after_write;
	}
	switch (c->srv->mode) {
	case DS_MODE_HANG:
		c->hung = true;
		return false;
	case DS_MODE_CLOSE:
		c->close_after_write = true;
		return false;
	case DS_MODE_STATUS:
		n = snprintf(body, sizeof(body), "%s failing with %d\n", c->srv->name, c->srv->fail_status);
		ds_respond(c, c->srv->fail_status, body, (size_t)n, head);
		return !c->close_after_write;
	case DS_MODE_OK:
		break;
	}

	if (r->upgrade_ws && r->ws_key) {
		char accept[29];
		if (ds_ws_accept(r->ws_key, r->ws_key_len, accept) == -1) {
			c->close_after_write = true;
			ds_respond(c, 400, "bad websocket key\n", 18, false);
			return false;
		}
		n = snprintf(body, sizeof(body),
			     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			     "Sec-WebSocket-Accept: %s\r\nX-Served-By: %.*s\r\n\r\n",
			     accept, DS_NAME_MAX - 1, c->srv->name);
		ds_out_put(c, body, (size_t)n);
		c->websocket = true;
		return true;
	}
	if (r->path_len == 7 && memcmp(r->path, "/health", 7) == 0) {
		ds_respond(c, 200, "ok\n", 3, head);
		return !c->close_after_write;
	}
	const char *xff = r->xff ? r->xff : "-";
	size_t xff_len = r->xff ? r->xff_len : 1;
	n = snprintf(body, sizeof(body), "%s %.*s xff=%.*s\n", c->srv->name,
		     (int)(r->path_len < DS_PATH_ECHO ? r->path_len : DS_PATH_ECHO), r->path,
		     (int)(xff_len < DS_XFF_ECHO ? xff_len : DS_XFF_ECHO), xff);
	ds_respond(c, 200, body, (size_t)n, head);
	return !c->close_after_write;
}

/* Consumes websocket frames from the input buffer and appends their echo
 * (server frames are never masked). Close frames are echoed and end the
 * connection; pings get a pong. Starts at input offset pos (bytes that
 * followed the upgrade request) and returns the offset reached. */
static size_t ds_ws_process(struct ds_conn *c, size_t pos)
{
	while (c->in_len - pos >= 2 && DS_OUT_SIZE - c->out_len >= DS_OUT_RESERVE && !c->close_after_write) {
		const unsigned char *f = (const unsigned char *)c->in + pos;
		size_t avail = c->in_len - pos, hlen = 2;
		uint64_t plen = f[1] & 0x7f;
		bool masked = f[1] & 0x80;
		unsigned opcode = f[0] & 0x0f;
		unsigned char hdr[10];
		size_t hdr_len;

		if (plen == 126) {
			if (avail < 4)
				break;
			plen = ((uint64_t)f[2] << 8) | f[3];
			hlen = 4;
		} else if (plen == 127) {
			if (avail < 10)
				break;
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = (plen << 8) | f[2 + i];
			hlen = 10;
		}
		if (masked)
			hlen += 4;
		if (plen > DS_IN_SIZE - 14 || plen + 10 > DS_OUT_SIZE - c->out_len) {
			/* 1009 message too big */
			static const unsigned char too_big[] = { 0x88, 0x02, 0x03, 0xf1 };
			ds_out_put(c, too_big, sizeof(too_big));
			c->close_after_write = true;
			return c->in_len;
		}
		if (avail < hlen + plen)
			break;

		unsigned char *payload = (unsigned char *)c->in + pos + hlen;
		if (masked) {
			const unsigned char *key = f + hlen - 4;
			for (uint64_t i = 0; i < plen; i++)
				payload[i] ^= key[i & 3];
		}
		if (opcode == 0x9)
			opcode = 0xA;              /* ping -> pong */
		else if (opcode == 0xA) {
			pos += hlen + plen;        /* unsolicited pong: ignore */
			continue;
		}
		hdr[0] = (unsigned char)((f[0] & 0x80) | opcode);
		if (plen < 126) {
			hdr[1] = (unsigned char)plen;
			hdr_len = 2;
		} else {
			hdr[1] = 126;
			hdr[2] = (unsigned char)(plen >> 8);
			hdr[3] = (unsigned char)plen;
			hdr_len = 4;
		}
		ds_out_put(c, hdr, hdr_len);
		ds_out_put(c, payload, (size_t)plen);
		pos += hlen + plen;
		if (opcode == 0x8)
			c->close_after_write = true;
	}
	return pos;
}

/* Consumes complete HTTP requests (and bodies to skip) from the input
 * buffer and appends their answers. Returns the number of bytes used. */
static size_t ds_http_process(struct ds_conn *c)
{
	size_t pos = 0;

	while (pos < c->in_len && !c->close_after_write && !c->hung && !c->websocket) {
		struct ds_request r;
		const char *start = c->in + pos, *eoh;
		size_t avail = c->in_len - pos;

		if (c->body_left) {
			size_t skip = avail < c->body_left ? avail : c->body_left;
			c->body_left -= skip;
			pos += skip;
			continue;
		}
		if (DS_OUT_SIZE - c->out_len < DS_OUT_RESERVE)
			break;                          /* resume after the write */
		eoh = memmem(start, avail, "\r\n\r\n", 4);
		if (!eoh) {
			if (pos == 0 && c->in_len == DS_IN_SIZE) {
				c->close_after_write = true;
				ds_respond(c, 431, "request head too large\n", 23, false);
			}
			break;
		}
		if (ds_parse_head(start, (size_t)(eoh - start), &r) == -1) {
			c->close_after_write = true;
			ds_respond(c, 400, "bad request\n", 12, false);
			break;
		}
		pos += (size_t)(eoh + 4 - start);
		if (r.chunked) {
			c->close_after_write = true;
			ds_respond(c, 501, "chunked bodies not supported\n", 29, false);
			break;
		}
		c->body_left = r.content_length;
		if (!ds_answer(c, &r))
			break;
	}
	if (c->hung)
		return c->in_len;                       /* discard whatever follows */
	return pos;
}

static void ds_conn_free(struct ds_conn *c);

/* Writes as much of the output buffer as the socket takes. Returns 0 when
 * everything pending is written (or the write must wait), -1 if the
 * connection was closed. */
static int ds_flush(struct ds_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_start(c->srv->loop, &c->wio);
				ev_io_stop(c->srv->loop, &c->rio);   /* back-pressure */
				return 0;
			}
			ds_conn_free(c);
			return -1;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	ev_io_stop(c->srv->loop, &c->wio);
	if (c->close_after_write) {
		ds_conn_free(c);
		return -1;
	}
	ev_io_start(c->srv->loop, &c->rio);
	return 0;
}

/* Runs the protocol over what is buffered, compacts the input buffer and
 * writes the batch of answers; repeats while a batch stopped early because
 * the output buffer was full and the socket took it all. Returns 0, or -1
 * if the connection is gone. */
static int ds_process(struct ds_conn *c)
{
	for (;;) {
		size_t used = 0;

		if (!c->websocket)
			used = ds_http_process(c);
		if (c->websocket)               /* also frames right after the upgrade */
			used = ds_ws_process(c, used);
		if (used) {
			memmove(c->in, c->in + used, c->in_len - used);
			c->in_len -= used;
		}
		if (ds_flush(c) == -1)
			return -1;
		if (c->out_len || !used || !c->in_len || c->hung)
			return 0;               /* waiting for the socket or for input */
	}
}

/* Read callback: appends what the socket has to the input buffer, then
 * processes it. EOF or an error closes the connection. */
static void ds_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ds_conn *c = w->data;
	ssize_t n;

	if (!c || c->magic != DS_CONN_MAGIC)
		abort();
	if (c->in_len == DS_IN_SIZE) {
		/* full buffer the parser could not use: nothing more to do */
		ds_conn_free(c);
		return;
	}
	n = read(c->fd, c->in + c->in_len, DS_IN_SIZE - c->in_len);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		ds_conn_free(c);
		return;
	}
	if (n == 0) {
		ds_conn_free(c);
		return;
	}
	c->in_len += (size_t)n;
	if (c->hung) {
		c->in_len = 0;                      /* keep reading, never answer */
		return;
	}
	ds_process(c);
}

/* Write callback: flushes the pending batch, then resumes parsing the input
 * that was left while the output buffer was full. */
static void ds_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ds_conn *c = w->data;

	if (!c || c->magic != DS_CONN_MAGIC)
		abort();
	if (ds_flush(c) == -1)
		return;
	if (c->in_len && !c->hung)
		ds_process(c);
}

/* Stops the connection's watchers, closes its socket and puts it on the
 * server's free list for the next accept. */
static void ds_conn_free(struct ds_conn *c)
{
	struct ds_server *s = c->srv;

	ev_io_stop(s->loop, &c->rio);
	ev_io_stop(s->loop, &c->wio);
	close(c->fd);
	c->fd = -1;
	c->magic = 0;
	c->next_free = s->free_list;
	s->free_list = c;
}

/* Takes a connection from the free list (or allocates one) for fd. Returns
 * NULL when out of memory. */
static struct ds_conn *ds_conn_new(struct ds_server *s, int fd)
{
	struct ds_conn *c = s->free_list;

	if (c)
		s->free_list = c->next_free;
	else if (!(c = malloc(sizeof(*c))))
		return NULL;
	c->magic = DS_CONN_MAGIC;
	c->fd = fd;
	c->srv = s;
	c->next_free = NULL;
	c->websocket = c->close_after_write = c->hung = false;
	c->body_left = c->in_len = c->out_off = c->out_len = 0;
	ev_io_init(&c->rio, ds_on_read, fd, EV_READ);
	ev_io_init(&c->wio, ds_on_write, fd, EV_WRITE);
	c->rio.data = c->wio.data = c;
	return c;
}

/* Accept callback: takes every pending connection (non-blocking, no
 * Nagle) and starts reading it. In close mode it closes them at once. */
static void ds_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ds_server *s = w->data;

	for (;;) {
		int one = 1;
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct ds_conn *c;

		if (fd == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				fprintf(stderr, "demo-server %s: accept: %s\n", s->name, strerror(errno));
			return;
		}
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1) {
			close(fd);
			continue;
		}
		c = ds_conn_new(s, fd);
		if (!c) {
			close(fd);
			continue;
		}
		ev_io_start(loop, &c->rio);
	}
}

/* Opens a listening socket on "HOST:PORT" or "[V6]:PORT". Returns the fd,
 * or -1 with a message in err. */
static int ds_listen(const char *spec, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(spec, ':'), *h = spec;
	size_t hlen;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int fd = -1, one = 1, rc;

	if (!colon || colon == spec || !colon[1]) {
		snprintf(err, errlen, "%s: expected HOST:PORT", spec);
		return -1;
	}
	hlen = (size_t)(colon - spec);
	if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host)) {
		snprintf(err, errlen, "%s: host too long", spec);
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", spec, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "%s: socket: %s", spec, strerror(errno));
		goto out_free_res;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 1024) == -1) {
		snprintf(err, errlen, "%s: %s", spec, strerror(errno));
		close(fd);
		fd = -1;
	}
out_free_res:
	freeaddrinfo(res);
	return fd;
}

/* SIGTERM/SIGINT: leave the loop; main exits 0. */
static void ds_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
	struct ds_server *s = &server;
	const char *listens[DS_MAX_LISTEN];
	int nlisten = 0;
	ev_signal sigterm, sigint;
	char err[512];

	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			ds_usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "demo-server: %s: missing argument or unknown option\n", a);
			ds_usage(stderr);
			return 2;
		}
		const char *v = argv[++i];
		if (strcmp(a, "--name") == 0) {
			if (strlen(v) == 0 || strlen(v) >= DS_NAME_MAX) {
				fprintf(stderr, "demo-server: --name must be 1..%d bytes\n", DS_NAME_MAX - 1);
				return 2;
			}
			snprintf(s->name, sizeof(s->name), "%s", v);
		} else if (strcmp(a, "--listen") == 0) {
			if (nlisten == DS_MAX_LISTEN) {
				fprintf(stderr, "demo-server: at most %d --listen\n", DS_MAX_LISTEN);
				return 2;
			}
			listens[nlisten++] = v;
		} else if (strcmp(a, "--fail-status") == 0) {
			if (ds_set_mode(s, v, strlen(v)) == -1) {
				fprintf(stderr, "demo-server: --fail-status: expected a status, hang, close or ok\n");
				return 2;
			}
		} else {
			fprintf(stderr, "demo-server: unknown option %s\n", a);
			ds_usage(stderr);
			return 2;
		}
	}
	if (!s->name[0] || nlisten == 0) {
		fprintf(stderr, "demo-server: --name and --listen are required\n");
		ds_usage(stderr);
		return 2;
	}

	s->loop = ev_default_loop(EVFLAG_AUTO);
	if (!s->loop) {
		fprintf(stderr, "demo-server: cannot create the event loop\n");
		return 1;
	}
	for (int i = 0; i < nlisten; i++) {
		int fd = ds_listen(listens[i], err, sizeof(err));
		if (fd == -1) {
			fprintf(stderr, "demo-server %s: listen %s\n", s->name, err);
			return 1;
		}
		ev_io_init(&s->listeners[i], ds_on_accept, fd, EV_READ);
		s->listeners[i].data = s;
		ev_io_start(s->loop, &s->listeners[i]);
		s->nlisten++;
	}
	ev_signal_init(&sigterm, ds_on_signal, SIGTERM);
	ev_signal_init(&sigint, ds_on_signal, SIGINT);
	ev_signal_start(s->loop, &sigterm);
	ev_signal_start(s->loop, &sigint);
	fprintf(stderr, "demo-server %s: listening on %d address(es)\n", s->name, nlisten);

	ev_run(s->loop, 0);

	fprintf(stderr, "demo-server %s: exiting after %llu requests\n", s->name, s->requests);
	return 0;
}
