/*
 * spop-load — a SPOP load generator that plays HAProxy's side.
 *
 * Opens N connections to an agent, does the HELLO handshake on each, then
 * keeps `depth` NOTIFYs in flight per connection: every ACK that comes back
 * frees its slot and a new NOTIFY is queued, and everything queued while
 * handling one read goes out in one write (as HAProxy batches frames). Each
 * ACK's stream-id and frame-id must match an outstanding NOTIFY (frame-id =
 * slot + 1, stream-id = the slot's current 2.6-style unique id), and with
 * --check-actions its actions must decode. Latency (NOTIFY written -> ACK read) goes into a
 * log-linear histogram per thread; nothing is allocated per request: NOTIFY
 * payloads come from a pool encoded at start.
 *
 * The last line of the report is `key=value` pairs, for scripts and tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench/load_hist.h"
#include "bench/load_pool.h"
#include "spop.h"

#define LOAD_MAGIC        0x5350304cu       /* "SP0L" */
#define LOAD_DEFAULT_POOL 8192              /* ~1 MB of payloads: stays in cache */
#define LOAD_DRAIN_NS     (2ull * 1000000000ull)

/* --- options --------------------------------------------------------------- */
struct options {
	const char *target;
	unsigned conns, depth, threads;
	double seconds;
	uint64_t count;             /* total NOTIFYs; 0 = run for `seconds` */
	unsigned project_pct;
	unsigned id_set;            /* draw project ids from this many; 0 = fresh each */
	unsigned pool;
	const char *message, *host, *mix_file;
	uint32_t max_frame_size;
	unsigned seed;
	bool check_actions;         /* decode every ACK's actions too */
};

static struct load_pool pool;

/* --- connections and workers ----------------------------------------------- */
enum conn_state { CONN_CONNECTING, CONN_HELLO, CONN_RUN, CONN_CLOSING, CONN_DONE };

struct slot {
	uint64_t stream_id;         /* 0 = free */
	uint64_t sent_ns;
};

struct counters {
	uint64_t acks, acks_in_window, notifies;
	uint64_t err_connect, err_hello, err_disconnect, err_ids, err_frame, err_io, err_lost;
	uint64_t bytes_in, bytes_out, reads, writes;
};

struct worker;

struct conn {
	uint32_t magic;
	int fd;
	enum conn_state state;
	struct worker *w;
	uint32_t mfs;               /* negotiated max-frame-size */
	uint8_t *in;  size_t in_len, in_room;
	uint8_t *out; size_t out_len, out_off, out_room;
	struct slot *slots;
	unsigned free_top;          /* free slot indices stack */
	unsigned *free_slots;
	unsigned inflight;
	uint64_t next_stream;
	bool want_out;
};

struct worker {
	uint32_t magic;
	pthread_t tid;
	unsigned index;
	const struct options *o;
	struct conn *conns;
	unsigned nconns, live;
	int epfd;
	uint64_t rng;
	uint64_t quota;             /* NOTIFYs left to issue; UINT64_MAX = by time */
	uint64_t start_ns, end_ns;
	struct load_hist hist;
	struct counters c;
};

static struct sockaddr_storage target_addr;
static socklen_t target_len;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Resolves "host:port", "[v6]:port", "/path" or "unix:/path". 0 / -1. */
static int target_parse(const char *t, char *err, size_t errlen)
{
	memset(&target_addr, 0, sizeof(target_addr));
	if (strncmp(t, "unix:", 5) == 0)
		t += 5;
	if (t[0] == '/') {
		struct sockaddr_un *su = (struct sockaddr_un *)&target_addr;
		if (strlen(t) >= sizeof(su->sun_path)) {
			snprintf(err, errlen, "unix path too long: %s", t);
			return -1;
		}
		su->sun_family = AF_UNIX;
		strcpy(su->sun_path, t);
		target_len = sizeof(*su);
		return 0;
	}
	char host[256];
	const char *colon = strrchr(t, ':');
	if (colon == NULL || (size_t)(colon - t) >= sizeof(host)) {
		snprintf(err, errlen, "target must be host:port or a unix path: %s", t);
		return -1;
	}
	memcpy(host, t, (size_t)(colon - t));
	host[colon - t] = '\0';
	char *h = host;
	if (h[0] == '[' && h[strlen(h) - 1] == ']') {
		h[strlen(h) - 1] = '\0';
		h++;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	int rc = getaddrinfo(h, colon + 1, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", t, gai_strerror(rc));
		return -1;
	}
	memcpy(&target_addr, res->ai_addr, res->ai_addrlen);
	target_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd != -1) {
		epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	if (c->state != CONN_DONE) {
		c->w->c.err_lost += c->inflight;
		c->inflight = 0;
		c->state = CONN_DONE;
		c->w->live--;
	}
}

static void conn_update_events(struct conn *c)
{
	bool want = c->out_off < c->out_len || c->state == CONN_CONNECTING;
	if (want == c->want_out)
		return;
	struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		c->w->c.err_io++;
	c->want_out = want;
}

/* Queues NOTIFYs into free slots while the quota and the deadline allow. */
static void conn_fill(struct conn *c, uint64_t now)
{
	struct worker *w = c->w;
	if (c->state != CONN_RUN || now >= w->end_ns)
		return;
	while (c->free_top > 0 && w->quota > 0) {
		size_t plen;
		const uint8_t *payload = load_pool_pick(&pool, load_rand(&w->rng), &plen);
		if (c->out_room - c->out_len < (size_t)SPOP_FRAME_HDR_MAX + plen)
			break;
		unsigned s = c->free_slots[--c->free_top];
		uint8_t *f = c->out + c->out_len;
		int h = spop_frame_begin(f, c->out_room - c->out_len, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN,
					 c->next_stream, s + 1);
		memcpy(f + h, payload, plen);
		spop_frame_end(f, (size_t)h + plen);
		c->out_len += (size_t)h + plen;
		c->slots[s].stream_id = c->next_stream++;
		c->slots[s].sent_ns = now;
		c->inflight++;
		w->c.notifies++;
		if (w->quota != UINT64_MAX)
			w->quota--;
	}
}

/* Writes what is queued; 0, or -1 when the connection died. */
static int conn_flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			c->w->c.err_io++;
			return -1;
		}
		c->w->c.writes++;
		c->w->c.bytes_out += (uint64_t)n;
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	conn_update_events(c);
	return 0;
}

/* Queues the HAPROXY-HELLO (3.1-style capabilities). */
static void conn_queue_hello(struct conn *c)
{
	int n = spop_haproxy_hello_encode(c->out + c->out_len, c->out_room - c->out_len,
					  c->w->o->max_frame_size, "pipelining", false, NULL);
	if (n > 0)
		c->out_len += (size_t)n;
}

/* Handles one ACK: its ids must name an outstanding NOTIFY. */
static void conn_on_ack(struct conn *c, const struct spop_frame *f, uint64_t now)
{
	struct worker *w = c->w;
	uint64_t s = f->frame_id - 1;
	if (f->frame_id == 0 || s >= w->o->depth || c->slots[s].stream_id == 0 ||
	    c->slots[s].stream_id != f->stream_id) {
		w->c.err_ids++;
		return;
	}
	size_t off = w->o->check_actions ? 0 : f->payload_len;
	while (off < f->payload_len) {
		struct spop_action a;
		int n = spop_action_decode(f->payload + off, f->payload_len - off, &a);
		if (n == -1) {
			w->c.err_frame++;
			break;
		}
		off += (size_t)n;
	}
	load_hist_add(&w->hist, now - c->slots[s].sent_ns);
	c->slots[s].stream_id = 0;
	c->free_slots[c->free_top++] = (unsigned)s;
	c->inflight--;
	w->c.acks++;
	if (now <= w->end_ns)
		w->c.acks_in_window++;
}

/* Parses every complete frame in the input buffer. -1 = close the conn. */
static int conn_on_frames(struct conn *c, uint64_t now)
{
	struct worker *w = c->w;
	size_t off = 0;
	int ret = 0;
	while (c->in_len - off >= 4) {
		uint32_t flen;
		spop_frame_length(c->in + off, c->in_len - off, &flen);
		if (flen == 0 || flen > c->mfs) {
			w->c.err_frame++;
			ret = -1;
			break;
		}
		if (c->in_len - off - 4 < flen)
			break;
		struct spop_frame f;
		if (spop_frame_decode(c->in + off + 4, flen, &f) == -1) {
			w->c.err_frame++;
			ret = -1;
			break;
		}
		off += 4 + flen;
		if (f.type == SPOP_FRAME_ACK && c->state == CONN_RUN) {
			conn_on_ack(c, &f, now);
		} else if (f.type == SPOP_FRAME_ACK && c->state == CONN_CLOSING) {
			/* late ACK after the drain deadline: already counted as unanswered */
		} else if (f.type == SPOP_FRAME_AGENT_HELLO && c->state == CONN_HELLO) {
			struct spop_hello h;
			if (spop_hello_decode(f.payload, f.payload_len, &h) == -1 || !h.has_version ||
			    !h.has_max_frame_size || !h.has_capabilities || h.max_frame_size < 256 ||
			    h.max_frame_size > w->o->max_frame_size) {
				w->c.err_hello++;
				ret = -1;
				break;
			}
			c->mfs = h.max_frame_size;
			if (pool.max_len + SPOP_FRAME_HDR_MAX - 4 > c->mfs) {
				fprintf(stderr, "spop-load: agent's max-frame-size %u is too small for our NOTIFYs\n",
					c->mfs);
				w->c.err_hello++;
				ret = -1;
				break;
			}
			c->state = CONN_RUN;
		} else if (f.type == SPOP_FRAME_AGENT_DISCONNECT) {
			struct spop_disconnect d;
			if (spop_disconnect_decode(f.payload, f.payload_len, &d) == -1 || !d.has_status ||
			    d.status != SPOP_ST_NORMAL || c->state != CONN_CLOSING) {
				w->c.err_disconnect++;
				if (c->state != CONN_CLOSING)
					fprintf(stderr, "spop-load: AGENT-DISCONNECT status %u: %.*s\n",
						d.has_status ? d.status : 99u,
						d.message ? (int)d.message_len : 0, d.message ? d.message : "");
			}
			ret = -1;
			break;
		} else {
			w->c.err_frame++;
		}
	}
	if (off > 0) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	return ret;
}

static void conn_on_readable(struct conn *c)
{
	struct worker *w = c->w;
	for (;;) {
		if (c->in_len == c->in_room) {        /* a frame larger than the buffer */
			w->c.err_frame++;
			conn_close(c);
			return;
		}
		ssize_t n = recv(c->fd, c->in + c->in_len, c->in_room - c->in_len, 0);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			w->c.err_io++;
			conn_close(c);
			return;
		}
		if (n == 0) {
			if (c->state != CONN_CLOSING) {
				w->c.err_io++;
				fprintf(stderr, "spop-load: agent closed a connection\n");
			}
			conn_close(c);
			return;
		}
		w->c.reads++;
		w->c.bytes_in += (uint64_t)n;
		c->in_len += (size_t)n;
		uint64_t now = now_ns();
		if (conn_on_frames(c, now) == -1) {
			conn_close(c);
			return;
		}
		conn_fill(c, now);
		if ((size_t)n < c->in_room / 2)
			break;
	}
	if (conn_flush(c) == -1)
		conn_close(c);
}

static int conn_open(struct conn *c)
{
	struct worker *w = c->w;
	c->fd = socket(target_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1)
		return -1;
	if (target_addr.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (connect(c->fd, (struct sockaddr *)&target_addr, target_len) == -1 && errno != EINPROGRESS)
		goto out_close_fd;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1)
		goto out_close_fd;
	c->want_out = true;
	c->state = CONN_CONNECTING;
	conn_queue_hello(c);
	return 0;
out_close_fd:
	close(c->fd);
	c->fd = -1;
	return -1;
}

static void conn_on_writable(struct conn *c)
{
	if (c->state == CONN_CONNECTING) {
		int soerr = 0;
		socklen_t l = sizeof(soerr);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) == -1 || soerr != 0) {
			c->w->c.err_connect++;
			fprintf(stderr, "spop-load: connect: %s\n", strerror(soerr ? soerr : errno));
			conn_close(c);
			return;
		}
		c->state = CONN_HELLO;
	}
	if (conn_flush(c) == -1)
		conn_close(c);
}

/* At the end: HAPROXY-DISCONNECT on every connection that is still up. */
static void worker_begin_close(struct worker *w)
{
	for (unsigned i = 0; i < w->nconns; i++) {
		struct conn *c = &w->conns[i];
		if (c->state != CONN_RUN)
			continue;
		w->c.err_lost += c->inflight;
		c->inflight = 0;
		int n = spop_disconnect_encode(c->out + c->out_len, c->out_room - c->out_len,
					       SPOP_FRAME_HAPROXY_DISCONNECT, SPOP_ST_NORMAL, "load done");
		if (n > 0)
			c->out_len += (size_t)n;
		c->state = CONN_CLOSING;
		if (conn_flush(c) == -1)
			conn_close(c);
	}
}

static bool worker_idle(const struct worker *w)
{
	for (unsigned i = 0; i < w->nconns; i++)
		if (w->conns[i].state == CONN_RUN && w->conns[i].inflight > 0)
			return false;
	return true;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[256];
	bool closing = false;
	uint64_t close_deadline = 0;

	for (unsigned i = 0; i < w->nconns; i++) {
		if (conn_open(&w->conns[i]) == -1) {
			w->c.err_connect++;
			fprintf(stderr, "spop-load: connect: %s\n", strerror(errno));
			w->conns[i].state = CONN_DONE;
			w->live--;
		}
	}
	uint64_t quota_done_ns = 0;
	while (w->live > 0) {
		uint64_t now = now_ns();
		if (w->quota == 0 && quota_done_ns == 0)
			quota_done_ns = now;
		/* Stop when every NOTIFY is answered, or after the drain delay. */
		if (!closing && (now >= w->end_ns + LOAD_DRAIN_NS ||
				 (quota_done_ns != 0 && now >= quota_done_ns + LOAD_DRAIN_NS) ||
				 ((now >= w->end_ns || w->quota == 0) && worker_idle(w)))) {
			closing = true;
			close_deadline = now + LOAD_DRAIN_NS;
			worker_begin_close(w);
			continue;
		}
		if (closing && now >= close_deadline)
			break;
		int n = epoll_wait(w->epfd, evs, 256, 10);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			w->c.err_io++;
			break;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->magic != LOAD_MAGIC || c->state == CONN_DONE)
				continue;
			if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
				conn_on_writable(c);
			if (c->state != CONN_DONE && evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_on_readable(c);
		}
	}
	for (unsigned i = 0; i < w->nconns; i++)
		conn_close(&w->conns[i]);
	return NULL;
}

/* Allocates a worker's connections and buffers up front. 0 / -1. */
static int worker_init(struct worker *w, unsigned index, unsigned nconns, const struct options *o)
{
	memset(w, 0, sizeof(*w));
	w->magic = LOAD_MAGIC;
	w->index = index;
	w->o = o;
	w->nconns = w->live = nconns;
	w->rng = 0x2545F4914F6CDD1Dull ^ ((uint64_t)(index + 1) * 0x9E3779B97F4A7C15ull) ^ o->seed;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd == -1)
		return -1;
	w->conns = calloc(nconns ? nconns : 1, sizeof(*w->conns));
	if (w->conns == NULL)
		return -1;
	size_t max_payload = pool.max_len;
	for (unsigned i = 0; i < nconns; i++) {
		struct conn *c = &w->conns[i];
		c->magic = LOAD_MAGIC;
		c->fd = -1;
		c->w = w;
		c->mfs = o->max_frame_size;
		c->in_room = 2 * (size_t)o->max_frame_size + 8;
		c->out_room = (size_t)o->depth * (SPOP_FRAME_HDR_MAX + max_payload) + 512;
		c->in = malloc(c->in_room);
		c->out = malloc(c->out_room);
		c->slots = calloc(o->depth, sizeof(*c->slots));
		c->free_slots = calloc(o->depth, sizeof(*c->free_slots));
		if (c->in == NULL || c->out == NULL || c->slots == NULL || c->free_slots == NULL)
			return -1;
		for (unsigned s = 0; s < o->depth; s++)
			c->free_slots[s] = o->depth - 1 - s;
		c->free_top = o->depth;
		/* 2.6-style stream ids: large, unique across connections */
		c->next_stream = 0x100000000ull * (index + 1) + (uint64_t)i * 0x1000000ull + 1;
	}
	return 0;
}

static void worker_free(struct worker *w)
{
	for (unsigned i = 0; w->conns != NULL && i < w->nconns; i++) {
		free(w->conns[i].in);
		free(w->conns[i].out);
		free(w->conns[i].slots);
		free(w->conns[i].free_slots);
	}
	free(w->conns);
	if (w->epfd != -1)
		close(w->epfd);
}

/* --- main ------------------------------------------------------------------ */
static void usage(FILE *out)
{
	fprintf(out,
		"usage: spop-load [options] TARGET\n"
		"Plays HAProxy's side of SPOP against an agent at TARGET (host:port,\n"
		"[v6]:port, /unix/path or unix:/path) and reports ACKs (decisions) per\n"
		"second and NOTIFY->ACK latency percentiles.\n"
		"\n"
		"  -c, --connections N   connections (default 16)\n"
		"  -d, --depth K         NOTIFYs in flight per connection (default 16)\n"
		"  -t, --duration SEC    run for SEC seconds (default 5)\n"
		"  -n, --count N         send N NOTIFYs in total instead of a duration\n"
		"  -T, --threads N       generator threads (default 1)\n"
		"  -m, --message NAME    message name (default route)\n"
		"  -p, --project-pct X   percent of paths /<uuid>/... (default 80), rest /other\n"
		"  -i, --ids M           draw project ids from a fixed set of M (default 0: a\n"
		"                        random id per pooled request)\n"
		"  -f, --mix FILE        requests from FILE, one \"path [host]\" per line\n"
		"      --host NAME       host argument (default example.com)\n"
		"      --pool N          pre-encoded requests to draw from (default %u)\n"
		"      --max-frame-size N  announced in HAPROXY-HELLO (default 16380)\n"
		"      --seed N          random seed (default 1)\n"
		"      --check-actions   decode every ACK's actions (costs generator CPU)\n"
		"  -h, --help            this text\n"
		"\n"
		"Exit status 0 when every ACK matched an outstanding NOTIFY, every\n"
		"connection ended with a normal DISCONNECT and at least one ACK came back.\n"
		"The last line is key=value pairs: decisions rate errors p50_us p90_us\n"
		"p99_us p999_us max_us ...\n", LOAD_DEFAULT_POOL);
}

static int parse_uint(const char *s, const char *what, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > max) {
		fprintf(stderr, "spop-load: bad %s: %s\n", what, s);
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = {
		.conns = 16, .depth = 16, .threads = 1, .seconds = 5.0, .project_pct = 80,
		.pool = LOAD_DEFAULT_POOL, .message = "route", .host = "example.com",
		.max_frame_size = SPOP_DEFAULT_FRAME_SIZE, .seed = 1,
	};
	static const struct option longopts[] = {
		{ "connections", required_argument, NULL, 'c' }, { "depth", required_argument, NULL, 'd' },
		{ "duration", required_argument, NULL, 't' },    { "count", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 'T' },     { "message", required_argument, NULL, 'm' },
		{ "project-pct", required_argument, NULL, 'p' }, { "ids", required_argument, NULL, 'i' },
		{ "mix", required_argument, NULL, 'f' },         { "host", required_argument, NULL, 'H' },
		{ "pool", required_argument, NULL, 'P' },        { "max-frame-size", required_argument, NULL, 'F' },
		{ "seed", required_argument, NULL, 'S' },        { "help", no_argument, NULL, 'h' },
		{ "check-actions", no_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long long v;
	char err[256];
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "c:d:t:n:T:m:p:i:f:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': if (parse_uint(optarg, "connections", 100000, &v)) return 2; o.conns = (unsigned)v; break;
		case 'd': if (parse_uint(optarg, "depth", 65536, &v)) return 2; o.depth = (unsigned)v; break;
		case 'n': if (parse_uint(optarg, "count", UINT64_MAX - 1, &v)) return 2; o.count = v; break;
		case 'T': if (parse_uint(optarg, "threads", 256, &v)) return 2; o.threads = (unsigned)v; break;
		case 'p': if (parse_uint(optarg, "project-pct", 100, &v)) return 2; o.project_pct = (unsigned)v; break;
		case 'i': if (parse_uint(optarg, "ids", 10000000, &v)) return 2; o.id_set = (unsigned)v; break;
		case 'P': if (parse_uint(optarg, "pool", 10000000, &v)) return 2; o.pool = (unsigned)v; break;
		case 'F': if (parse_uint(optarg, "max-frame-size", UINT32_MAX, &v)) return 2;
			  o.max_frame_size = (uint32_t)v; break;
		case 'S': if (parse_uint(optarg, "seed", UINT32_MAX, &v)) return 2; o.seed = (unsigned)v; break;
		case 't': {
			char *end;
			o.seconds = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(o.seconds > 0)) {
				fprintf(stderr, "spop-load: bad duration: %s\n", optarg);
				return 2;
			}
			break;
		}
		case 'A': o.check_actions = true; break;
		case 'm': o.message = optarg; break;
		case 'f': o.mix_file = optarg; break;
		case 'H': o.host = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	o.target = argv[optind];
	if (o.conns == 0 || o.depth == 0 || o.threads == 0 || o.pool == 0 || o.max_frame_size < 256) {
		fprintf(stderr, "spop-load: connections, depth, threads, pool must be > 0, max-frame-size >= 256\n");
		return 2;
	}
	if (o.threads > o.conns)
		o.threads = o.conns;
	struct load_pool_config pc = {
		.message = o.message, .host = o.host, .mix_file = o.mix_file, .size = o.pool,
		.project_pct = o.project_pct, .id_set = o.id_set, .seed = o.seed,
	};
	if (target_parse(o.target, err, sizeof(err)) == -1 || load_pool_build(&pool, &pc, err, sizeof(err)) == -1) {
		fprintf(stderr, "spop-load: %s\n", err);
		return 2;
	}

	struct worker *ws = calloc(o.threads, sizeof(*ws));
	if (ws == NULL) {
		fprintf(stderr, "spop-load: out of memory\n");
		goto out_free_pool;
	}
	for (unsigned t = 0; t < o.threads; t++) {
		ws[t].epfd = -1;
		unsigned n = o.conns / o.threads + (t < o.conns % o.threads);
		if (worker_init(&ws[t], t, n, &o) == -1) {
			fprintf(stderr, "spop-load: worker setup: %s\n", strerror(errno));
			goto out_free_workers;
		}
	}
	uint64_t start = now_ns();
	uint64_t end = o.count ? UINT64_MAX - LOAD_DRAIN_NS : start + (uint64_t)(o.seconds * 1e9);
	for (unsigned t = 0; t < o.threads; t++) {
		ws[t].start_ns = start;
		ws[t].end_ns = end;
		ws[t].quota = o.count ? o.count / o.threads + (t < o.count % o.threads) : UINT64_MAX;
	}
	unsigned started = 0;
	for (; started < o.threads; started++) {
		if (pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]) != 0) {
			fprintf(stderr, "spop-load: pthread_create failed\n");
			break;
		}
	}
	struct load_hist *h = calloc(1, sizeof(*h));
	struct counters tot = { 0 };
	for (unsigned t = 0; t < started; t++) {
		pthread_join(ws[t].tid, NULL);
		if (h != NULL)
			load_hist_merge(h, &ws[t].hist);
		const struct counters *c = &ws[t].c;
		tot.acks += c->acks; tot.acks_in_window += c->acks_in_window; tot.notifies += c->notifies;
		tot.err_connect += c->err_connect; tot.err_hello += c->err_hello;
		tot.err_disconnect += c->err_disconnect; tot.err_ids += c->err_ids;
		tot.err_frame += c->err_frame; tot.err_io += c->err_io; tot.err_lost += c->err_lost;
		tot.bytes_in += c->bytes_in; tot.bytes_out += c->bytes_out;
		tot.reads += c->reads; tot.writes += c->writes;
	}
	uint64_t finish = now_ns();
	struct rusage ru;
	double cpu_s = 0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	double cpu_pct = finish > start ? 100.0 * cpu_s / ((double)(finish - start) / 1e9) : 0;
	uint64_t last_ack_ns = o.count ? finish : (end < finish ? end : finish);
	double window = (double)(last_ack_ns - start) / 1e9;
	uint64_t errors = tot.err_connect + tot.err_hello + tot.err_disconnect + tot.err_ids +
		tot.err_frame + tot.err_io + tot.err_lost + (started < o.threads);
	double rate = window > 0 ? (double)(o.count ? tot.acks : tot.acks_in_window) / window : 0;

	printf("spop-load: %s connections=%u depth=%u threads=%u message=%s project-pct=%u ids=%u\n",
	       o.target, o.conns, o.depth, o.threads, o.message, o.project_pct, o.id_set);
	printf("  errors: connect %" PRIu64 ", hello %" PRIu64 ", disconnect %" PRIu64 ", bad ids %" PRIu64
	       ", bad frames %" PRIu64 ", io %" PRIu64 ", unanswered %" PRIu64 "\n",
	       tot.err_connect, tot.err_hello, tot.err_disconnect, tot.err_ids, tot.err_frame, tot.err_io,
	       tot.err_lost);
	printf("  %.0f decisions/s over %.2f s; ACKs per read %.1f, NOTIFYs per write %.1f; generator CPU %.0f %%\n",
	       rate, window,
	       tot.reads ? (double)tot.acks / (double)tot.reads : 0.0,
	       tot.writes ? (double)tot.notifies / (double)tot.writes : 0.0, cpu_pct);
	if (h != NULL)
		printf("  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
		       load_hist_quantile(h, 0.5) / 1e3, load_hist_quantile(h, 0.9) / 1e3, load_hist_quantile(h, 0.99) / 1e3,
		       load_hist_quantile(h, 0.999) / 1e3, h ? h->max / 1e3 : 0.0);
	printf("decisions=%" PRIu64 " notifies=%" PRIu64 " rate=%.0f seconds=%.3f errors=%" PRIu64
	       " p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f gen_cpu_pct=%.0f\n",
	       tot.acks, tot.notifies, rate, window, errors,
	       h ? load_hist_quantile(h, 0.5) / 1e3 : 0.0, h ? load_hist_quantile(h, 0.9) / 1e3 : 0.0,
	       h ? load_hist_quantile(h, 0.99) / 1e3 : 0.0, h ? load_hist_quantile(h, 0.999) / 1e3 : 0.0,
	       h ? h->max / 1e3 : 0.0, cpu_pct);
	free(h);
	rc = (errors == 0 && tot.acks > 0) ? 0 : 1;
out_free_workers:
	for (unsigned t = 0; t < o.threads; t++)
		worker_free(&ws[t]);
	free(ws);
out_free_pool:
	load_pool_free(&pool);
	return rc;
}
