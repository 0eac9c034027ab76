/*
 * hitch_preload.c — libsg-hitch.so: what hitch lacks, added from outside.
 * tls/hitch-run.sh starts hitch with
 *
 *   LD_PRELOAD=build/libsg-hitch.so SG_TICKET_KEYS=RUN/ticket.keys
 *
 * 1. Ticket keys. hitch has no setting for them: each SSL_CTX it makes (at
 *    start, and again on every SIGHUP reload) gets fresh random keys from
 *    OpenSSL, so a restart or a certificate roll would turn every resumption
 *    into a full handshake, unlike stunnel (ticketKeySecret) and HAProxy
 *    (tls-ticket-keys). This library wraps SSL_CTX_new(): after OpenSSL made
 *    the context it installs the keys read from that file (two lines of 64
 *    hex digits: encryption key, then MAC key; the 16-byte key name is the
 *    first half of their SHA-256, so every process sharing the file names
 *    them alike). The file is read on every SSL_CTX_new(), so a rotated file
 *    takes effect at the next reload. A missing or malformed file makes
 *    SSL_CTX_new() fail with the reason on stderr: hitch then refuses to
 *    start (or to reload) instead of quietly running without resumption
 *    across restarts.
 *
 * 2. A reload that resets nothing. hitch's workers each bind a listener
 *    of their own with SO_REUSEPORT (the manager's own bind only checks the
 *    address and closes it). The kernel spreads new connections over the
 *    sockets of a reuseport group by hash, and when a SIGHUP retires the
 *    old workers, closing a worker's listener resets every connection still
 *    queued on it (measured: 7 resets in 15 reloads under 4 connecting
 *    clients). The kernel moves them only with net.ipv4.tcp_migrate_req=1,
 *    a machine-wide setting. Instead this library makes every worker share
 *    one listener the manager keeps:
 *    - listen() on a SO_REUSEPORT TCP socket, in a process that holds no
 *      other listener on that address, keeps a duplicate of it open for the
 *      life of the process (the manager's check socket, so the manager
 *      keeps it; workers inherit the duplicate across fork);
 *    - bind() of a SO_REUSEPORT TCP socket to an address on which the
 *      process already holds a listener makes the new descriptor that
 *      listener (dup2); listen() on it again only restates the backlog.
 *    All workers then accept from one queue that outlives every worker.
 *    Other sockets go through untouched. The cost: a frontend address
 *    dropped from the configuration keeps listening (unanswered) until
 *    hitch restarts, so change frontends with a restart, not a reload.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#define KEY_BYTES 32
#define NAME_BYTES 16

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method);
int bind(int fd, const struct sockaddr *addr, socklen_t len);
int listen(int fd, int backlog);

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One line of exactly 64 hex digits into out[32]; 0 on success. */
static int parse_line(FILE *f, unsigned char *out)
{
	char line[160];
	size_t n, i;

	if (!fgets(line, sizeof line, f))
		return -1;
	n = strcspn(line, "\r\n");
	if (n != 2 * KEY_BYTES)
		return -1;
	for (i = 0; i < KEY_BYTES; i++) {
		int hi = hexval(line[2 * i]), lo = hexval(line[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* OpenSSL's layout for SSL_CTX_set_tlsext_ticket_keys(): name, HMAC key,
 * AES key. Returns 0 when installed, -1 with a message on stderr. */
static int install_keys(SSL_CTX *ctx, const char *path)
{
	unsigned char aes[KEY_BYTES], mac[KEY_BYTES], both[2 * KEY_BYTES];
	unsigned char digest[EVP_MAX_MD_SIZE], keys[NAME_BYTES + 2 * KEY_BYTES];
	unsigned int dlen = 0;
	FILE *f = fopen(path, "r");
	int bad;

	if (!f) {
		fprintf(stderr, "libsg-hitch: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	bad = parse_line(f, aes) || parse_line(f, mac);
	fclose(f);
	if (bad) {
		fprintf(stderr, "libsg-hitch: %s: want two lines of 64 hex digits "
			"(tls/ticket-keys.sh makes it)\n", path);
		return -1;
	}
	memcpy(both, aes, KEY_BYTES);
	memcpy(both + KEY_BYTES, mac, KEY_BYTES);
	if (!EVP_Digest(both, sizeof both, digest, &dlen, EVP_sha256(), NULL) || dlen < NAME_BYTES) {
		fprintf(stderr, "libsg-hitch: SHA-256 failed\n");
		return -1;
	}
	memcpy(keys, digest, NAME_BYTES);
	memcpy(keys + NAME_BYTES, mac, KEY_BYTES);
	memcpy(keys + NAME_BYTES + KEY_BYTES, aes, KEY_BYTES);
	if (SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof keys) != 1) {
		fprintf(stderr, "libsg-hitch: OpenSSL refused the ticket keys\n");
		return -1;
	}
	OPENSSL_cleanse(keys, sizeof keys);
	OPENSSL_cleanse(both, sizeof both);
	OPENSSL_cleanse(aes, sizeof aes);
	OPENSSL_cleanse(mac, sizeof mac);
	return 0;
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method)
{
	static SSL_CTX *(*real)(const SSL_METHOD *);
	const char *path = getenv("SG_TICKET_KEYS");
	SSL_CTX *ctx;

	if (!real) {
		/* dlsym returns void *; POSIX guarantees the conversion. */
		*(void **)&real = dlsym(RTLD_NEXT, "SSL_CTX_new");
		if (!real) {
			fprintf(stderr, "libsg-hitch: no SSL_CTX_new after this library: %s\n", dlerror());
			return NULL;
		}
	}
	ctx = real(method);
	if (!ctx || !path || !*path)
		return ctx;
	if (install_keys(ctx, path) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The same TCP/IP address and port (an IPv6 scope too). */
static int same_addr(const struct sockaddr_storage *a, const struct sockaddr *b, socklen_t blen)
{
	if (a->ss_family != b->sa_family)
		return 0;
	if (b->sa_family == AF_INET && blen >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (b->sa_family == AF_INET6 && blen >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
		       !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr);
	}
	return 0;
}

static int sockopt_int(int fd, int level, int name)
{
	int v = 0;
	socklen_t l = sizeof v;

	return getsockopt(fd, level, name, &v, &l) == 0 ? v : -1;
}

/* A listening TCP socket of this process bound to addr, other than fd;
 * -1 when there is none. Called once per frontend address per worker. */
static int held_listener(int fd, const struct sockaddr *addr, socklen_t len)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int found = -1;

	if (!d)
		return -1;
	while (found < 0 && (e = readdir(d)) != NULL) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		char *end;
		long c = strtol(e->d_name, &end, 10);

		if (*end || end == e->d_name || c == fd || c == dirfd(d))
			continue;
		if (sockopt_int((int)c, SOL_SOCKET, SO_ACCEPTCONN) != 1 ||
		    sockopt_int((int)c, SOL_SOCKET, SO_TYPE) != SOCK_STREAM ||
		    sockopt_int((int)c, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_TCP)
			continue;
		if (getsockname((int)c, (struct sockaddr *)&ss, &sl) == 0 && same_addr(&ss, addr, len))
			found = (int)c;
	}
	closedir(d);
	return found;
}

/* A SO_REUSEPORT TCP/IP socket: the kind hitch listens with. */
static int reuseport_tcp(int fd)
{
	return sockopt_int(fd, SOL_SOCKET, SO_REUSEPORT) == 1 &&
	       sockopt_int(fd, SOL_SOCKET, SO_TYPE) == SOCK_STREAM &&
	       sockopt_int(fd, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);
	int held;

	if (!real) {
		*(void **)&real = dlsym(RTLD_NEXT, "bind");
		if (!real) {
			errno = ENOSYS;
			return -1;
		}
	}
	if (!addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) || !reuseport_tcp(fd))
		return real(fd, addr, len);
	held = held_listener(fd, addr, len);
	if (held < 0)
		return real(fd, addr, len);
	/* fd's own socket is dropped; its options (non-blocking, REUSEADDR)
	 * were set on the shared one by the manager as well. */
	return dup2(held, fd) == fd ? 0 : -1;
}

int listen(int fd, int backlog)
{
	static int (*real)(int, int);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;

	if (!real) {
		*(void **)&real = dlsym(RTLD_NEXT, "listen");
		if (!real) {
			errno = ENOSYS;
			return -1;
		}
	}
	if (real(fd, backlog) < 0)
		return -1;
	/* The first listener of an address in this process: keep a copy
	 * (close-on-exec, inherited by fork). Failing to keep one costs only
	 * the shared queue, never the listen() hitch asked for. */
	if (reuseport_tcp(fd) && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) &&
	    held_listener(fd, (struct sockaddr *)&ss, sl) < 0 &&
	    fcntl(fd, F_DUPFD_CLOEXEC, 3) < 0)
		fprintf(stderr, "libsg-hitch: cannot keep the listener: %s (reloads may reset queued connections)\n",
			strerror(errno));
	return 0;
}
