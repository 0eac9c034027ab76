/*
 * tests/unit/test_tls_client.c — the tls.h client against real TLS servers.
 *
 * One source, two binaries: build/tests/test_tls_openssl and
 * build/tests/test_tls_wolfssl link the same tests with one back end each,
 * so both back ends must give the same answers.
 *
 * The servers are OpenSSL, in a thread of this process, on 127.0.0.1 with
 * kernel-chosen ports. Their certificates are made when the test starts (no
 * committed certificate can expire): a private ECDSA P-256 CA, a good
 * server certificate (SANs localhost and 127.0.0.1), one that expired
 * yesterday, one signed by another CA, and a TLS 1.1-only server. The
 * client side runs the real libev helper (tls_connect_start) on its own loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define DAY (24L * 3600L)

static const char *expected_backend; /* from the binary's name */

/* ---------------------------------------------------------------------------
 * Certificates made at test time */

static EVP_PKEY *new_ec_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* A certificate for key, valid from now+from_s to now+to_s, signed by
 * issuer/issuer_key (self-signed CA when issuer is NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       long from_s, long to_s, const char *san)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *name;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from_s));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to_s));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"seedgate test", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	if (issuer == NULL) {
		add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
		add_ext(x, NULL, NID_subject_key_identifier, "hash");
	} else {
		add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
		add_ext(x, issuer, NID_ext_key_usage, "serverAuth");
		add_ext(x, issuer, NID_subject_alt_name, san);
	}
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

/* ---------------------------------------------------------------------------
 * The OpenSSL server thread: one listening socket per kind of server,
 * connections served one at a time (the client side is non-blocking). */

enum srv_kind { SRV_GOOD, SRV_EXPIRED, SRV_OTHER_CA, SRV_OLD_TLS, SRV_KINDS };

struct fixture {
	char dir[64];
	char ca_file[96];
	EVP_PKEY *ca_key, *other_ca_key, *leaf_key;
	X509 *ca, *other_ca, *good, *expired, *foreign;
	time_t good_not_after, expired_not_after;
	SSL_CTX *sctx[SRV_KINDS];
	int lfd[SRV_KINDS];
	uint16_t port[SRV_KINDS];
	int silent_fd;            /* listens, never accepts: handshake timeout */
	uint16_t silent_port;
	uint16_t closed_port;     /* nothing listens there */
	int wake[2];
	pthread_t thread;
};

static int listen_any(uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_int_not_equal(fd, -1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static SSL_CTX *server_ctx(X509 *cert, EVP_PKEY *key, X509 *chain_ca, bool old_tls)
{
	SSL_CTX *s = SSL_CTX_new(TLS_server_method());

	assert_non_null(s);
	assert_int_equal(SSL_CTX_use_certificate(s, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(s, key), 1);
	if (chain_ca != NULL)
		assert_int_equal(SSL_CTX_add1_chain_cert(s, chain_ca), 1);
	if (old_tls) {
		SSL_CTX_set_security_level(s, 0);
		SSL_CTX_set_min_proto_version(s, TLS1_VERSION);
		SSL_CTX_set_max_proto_version(s, TLS1_1_VERSION);
	}
	return s;
}

/* Serves one accepted connection: handshake, read one request, answer. */
static void serve_one(SSL_CTX *sctx, int fd)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
	struct timeval tv = { .tv_sec = 3 };
	char buf[2048];
	size_t got = 0, n;
	SSL *ssl;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	ssl = SSL_new(sctx);
	if (ssl == NULL)
		return;
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) == 1) {
		while (got < sizeof(buf) - 1 && SSL_read_ex(ssl, buf + got, sizeof(buf) - 1 - got, &n) == 1) {
			got += n;
			buf[got] = '\0';
			if (strstr(buf, "\r\n\r\n") != NULL)
				break;
		}
		if (strstr(buf, "\r\n\r\n") != NULL)
			SSL_write_ex(ssl, resp, sizeof(resp) - 1, &n);
		SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	ERR_clear_error();
}

static void *server_main(void *arg)
{
	struct fixture *f = arg;
	struct pollfd pfd[SRV_KINDS + 1];

	for (;;) {
		for (int i = 0; i < SRV_KINDS; i++)
			pfd[i] = (struct pollfd){ .fd = f->lfd[i], .events = POLLIN };
		pfd[SRV_KINDS] = (struct pollfd){ .fd = f->wake[0], .events = POLLIN };
		if (poll(pfd, SRV_KINDS + 1, -1) == -1) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		if (pfd[SRV_KINDS].revents)
			return NULL;
		for (int i = 0; i < SRV_KINDS; i++) {
			if (!pfd[i].revents)
				continue;
			int fd = accept(f->lfd[i], NULL, NULL);
			if (fd == -1)
				continue;
			serve_one(f->sctx[i], fd);
			close(fd);
		}
	}
}

static void write_pem(const char *path, X509 *a, X509 *b)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(PEM_write_X509(fp, a), 1);
	if (b != NULL)
		assert_int_equal(PEM_write_X509(fp, b), 1);
	assert_int_equal(fclose(fp), 0);
}

static int group_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	time_t now = time(NULL);
	int fd;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_tls_XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->ca_file, sizeof(f->ca_file), "%s/ca.pem", f->dir);

	f->ca_key = new_ec_key();
	f->other_ca_key = new_ec_key();
	f->leaf_key = new_ec_key();
	f->ca = make_cert(f->ca_key, "seedgate test CA", NULL, NULL, -DAY, 365 * DAY, NULL);
	f->other_ca = make_cert(f->other_ca_key, "some other CA", NULL, NULL, -DAY, 365 * DAY, NULL);
	f->good = make_cert(f->leaf_key, "localhost", f->ca, f->ca_key, -3600, 30 * DAY,
	                    "DNS:localhost,IP:127.0.0.1");
	f->good_not_after = now + 30 * DAY;
	f->expired = make_cert(f->leaf_key, "localhost", f->ca, f->ca_key, -30 * DAY, -DAY,
	                       "DNS:localhost,IP:127.0.0.1");
	f->expired_not_after = now - DAY;
	f->foreign = make_cert(f->leaf_key, "localhost", f->other_ca, f->other_ca_key, -3600, 30 * DAY,
	                       "DNS:localhost,IP:127.0.0.1");
	write_pem(f->ca_file, f->ca, NULL);

	f->sctx[SRV_GOOD] = server_ctx(f->good, f->leaf_key, NULL, false);
	f->sctx[SRV_EXPIRED] = server_ctx(f->expired, f->leaf_key, NULL, false);
	f->sctx[SRV_OTHER_CA] = server_ctx(f->foreign, f->leaf_key, f->other_ca, false);
	f->sctx[SRV_OLD_TLS] = server_ctx(f->good, f->leaf_key, NULL, true);
	for (int i = 0; i < SRV_KINDS; i++)
		f->lfd[i] = listen_any(&f->port[i]);
	f->silent_fd = listen_any(&f->silent_port);
	fd = listen_any(&f->closed_port);
	close(fd);

	assert_int_equal(pipe(f->wake), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, server_main, f), 0);
	*state = f;
	return 0;
}

static int group_teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];

	assert_int_equal(write(f->wake[1], "x", 1), 1);
	pthread_join(f->thread, NULL);
	close(f->wake[0]);
	close(f->wake[1]);
	for (int i = 0; i < SRV_KINDS; i++) {
		close(f->lfd[i]);
		SSL_CTX_free(f->sctx[i]);
	}
	close(f->silent_fd);
	X509_free(f->ca);
	X509_free(f->other_ca);
	X509_free(f->good);
	X509_free(f->expired);
	X509_free(f->foreign);
	EVP_PKEY_free(f->ca_key);
	EVP_PKEY_free(f->other_ca_key);
	EVP_PKEY_free(f->leaf_key);
	snprintf(path, sizeof(path), "%s", f->ca_file);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Client side: the libev helper, run to completion */

struct result {
	int calls;
	enum tls_status st;
	struct tls_conn *conn;
	int fd;
	int64_t not_after;
	char err[256];
};

static void on_done(void *udata, enum tls_status st, struct tls_conn *conn, int fd,
                    int64_t not_after, const char *err)
{
	struct result *r = udata;

	r->calls++;
	r->st = st;
	r->conn = conn;
	r->fd = fd;
	r->not_after = not_after;
	snprintf(r->err, sizeof(r->err), "%s", err);
}

/* Connects to 127.0.0.1:port with the helper and runs the loop until the
 * callback has run. */
static void connect_to(struct tls_ctx *ctx, uint16_t port, const char *sni, unsigned timeout_ms,
                       struct result *r)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char err[256] = "";
	struct tls_connect *op;

	memset(r, 0, sizeof(*r));
	r->fd = -2;
	assert_non_null(loop);
	op = tls_connect_start(loop, ctx, (struct sockaddr *)&sin, sizeof(sin), sni, timeout_ms,
	                       on_done, r, err, sizeof(err));
	assert_non_null(op);
	assert_int_equal(r->calls, 0); /* never called from inside start */
	ev_run(loop, 0);
	ev_loop_destroy(loop);
	assert_int_equal(r->calls, 1);
	if (r->st == TLS_OK) {
		assert_non_null(r->conn);
		assert_true(r->fd >= 0);
		assert_int_equal(tls_conn_fd(r->conn), r->fd);
	} else {
		print_message("    port %u sni %s: %s: %s\n", port, sni, tls_status_str(r->st), r->err);
		assert_null(r->conn);
		assert_int_equal(r->fd, -1);
		assert_true(r->err[0] != '\0');
	}
}

static void close_result(struct result *r)
{
	tls_conn_free(&r->conn);
	assert_null(r->conn);
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

/* Sends a request and reads the whole response on a ready connection,
 * polling on WANT_* like a real event loop would. */
static void exchange(struct tls_conn *c, char *out, size_t outlen)
{
	static const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
	enum tls_status st;
	size_t got = 0;
	ssize_t n;

	for (;;) {
		n = tls_conn_write(c, req, sizeof(req) - 1, &st);
		if (n > 0)
			break;
		assert_true(st == TLS_WANT_READ || st == TLS_WANT_WRITE);
		poll(&(struct pollfd){ .fd = tls_conn_fd(c), .events = st == TLS_WANT_READ ? POLLIN : POLLOUT }, 1, 2000);
	}
	assert_int_equal(n, (ssize_t)(sizeof(req) - 1));
	for (;;) {
		n = tls_conn_read(c, out + got, outlen - 1 - got, &st);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0) {
			assert_int_equal(st, TLS_ERR_CLOSED);
			break;
		}
		assert_true(st == TLS_WANT_READ || st == TLS_WANT_WRITE);
		assert_true(poll(&(struct pollfd){ .fd = tls_conn_fd(c),
		                 .events = st == TLS_WANT_READ ? POLLIN : POLLOUT }, 1, 3000) == 1);
	}
	out[got] = '\0';
}

static struct tls_ctx *new_ctx(const struct fixture *f, bool verify)
{
	char err[256] = "";
	struct tls_ctx *ctx = tls_ctx_new(f->ca_file, verify, err, sizeof(err));

	if (ctx == NULL)
		fail_msg("tls_ctx_new: %s", err);
	return ctx;
}

/* ---------------------------------------------------------------------------
 * Tests */

static void test_backend_name(void **state)
{
	/* build/tests/test_tls_<backend> must link that back end. */
	if (expected_backend != NULL)
		assert_string_equal(tls_backend_name(), expected_backend);
	assert_true(strcmp(tls_backend_name(), "openssl") == 0 || strcmp(tls_backend_name(), "wolfssl") == 0);
	assert_non_null(tls_backend_version());
	assert_string_equal(tls_status_str(TLS_ERR_VERIFY_EXPIRED), "cert-expired");
	assert_string_equal(tls_status_str(TLS_ERR_VERIFY_NAME), "name-mismatch");
	assert_string_equal(tls_status_str(TLS_ERR_VERIFY_UNKNOWN_CA), "unknown-ca");
	assert_string_equal(tls_status_str(TLS_OK), "ok");
}

static void test_good_backend_passes(void **state)
{
	struct fixture *f = *state;
	struct tls_ctx *ctx = new_ctx(f, true);
	struct result r;
	char resp[4096];

	connect_to(ctx, f->port[SRV_GOOD], "localhost", 3000, &r);
	if (r.st != TLS_OK)
		fail_msg("good backend failed: %s: %s", tls_status_str(r.st), r.err);
	/* Both back ends negotiate TLS 1.3 with an OpenSSL 3 server. */
	assert_string_equal(tls_conn_version(r.conn), "TLSv1.3");
	assert_true(tls_conn_cipher(r.conn)[0] != '\0');
	/* notAfter as the test made it, to the minute. */
	assert_true(r.not_after > (int64_t)f->good_not_after - 120);
	assert_true(r.not_after < (int64_t)f->good_not_after + 120);
	assert_true(tls_conn_peer_not_after(r.conn) == r.not_after);
	exchange(r.conn, resp, sizeof(resp));
	assert_non_null(strstr(resp, "HTTP/1.1 200 OK"));
	assert_non_null(strstr(resp, "\r\n\r\nhello"));
	close_result(&r);
	tls_ctx_free(&ctx);
	assert_null(ctx);
}

static void test_good_backend_by_ip(void **state)
{
	struct fixture *f = *state;
	struct tls_ctx *ctx = new_ctx(f, true);
	struct result r;

	connect_to(ctx, f->port[SRV_GOOD], "127.0.0.1", 3000, &r);
	if (r.st != TLS_OK)
		fail_msg("IP SAN check failed: %s: %s", tls_status_str(r.st), r.err);
	close_result(&r);
	tls_ctx_free(&ctx);
}

/* Connects with verification on and expects status want; returns the
 * peer expiry the failure reported. */
static int64_t expect_status(const struct fixture *f, enum srv_kind srv, const char *sni,
                             enum tls_status want)
{
	struct tls_ctx *ctx = new_ctx(f, true);
	struct result r;

	connect_to(ctx, f->port[srv], sni, 3000, &r);
	if (r.st != want)
		fail_msg("%s: expected %s, got %s: %s", sni, tls_status_str(want), tls_status_str(r.st), r.err);
	close_result(&r);
	tls_ctx_free(&ctx);
	return r.not_after;
}

static void test_expired_fails(void **state)
{
	struct fixture *f = *state;
	int64_t not_after = expect_status(f, SRV_EXPIRED, "localhost", TLS_ERR_VERIFY_EXPIRED);

	/* The expiry is known even though verification failed. */
	assert_true(not_after > (int64_t)f->expired_not_after - 120);
	assert_true(not_after < (int64_t)f->expired_not_after + 120);
}

static void test_wrong_name_fails(void **state)
{
	expect_status(*state, SRV_GOOD, "wrong.example.org", TLS_ERR_VERIFY_NAME);
}

/* An IP literal is checked against the IP SANs: 127.0.0.2 is not in them. */
static void test_wrong_ip_fails(void **state)
{
	expect_status(*state, SRV_GOOD, "127.0.0.2", TLS_ERR_VERIFY_NAME);
}

static void test_unknown_ca_fails(void **state)
{
	expect_status(*state, SRV_OTHER_CA, "localhost", TLS_ERR_VERIFY_UNKNOWN_CA);
}

/* verify=false: an expired certificate is accepted, its expiry reported. */
static void test_no_verify_reports_expiry(void **state)
{
	struct fixture *f = *state;
	struct tls_ctx *ctx = new_ctx(f, false);
	struct result r;
	char resp[4096];

	connect_to(ctx, f->port[SRV_EXPIRED], "wrong.example.org", 3000, &r);
	if (r.st != TLS_OK)
		fail_msg("verify=false failed: %s: %s", tls_status_str(r.st), r.err);
	assert_true(r.not_after < (int64_t)time(NULL));
	assert_true(r.not_after > (int64_t)f->expired_not_after - 120);
	exchange(r.conn, resp, sizeof(resp));
	assert_non_null(strstr(resp, "hello"));
	close_result(&r);
	tls_ctx_free(&ctx);
}

/* A server that speaks only TLS 1.0/1.1 is refused: TLS 1.2 is the floor. */
static void test_old_tls_refused(void **state)
{
	struct fixture *f = *state;
	struct tls_ctx *ctx = new_ctx(f, true);
	struct result r;

	connect_to(ctx, f->port[SRV_OLD_TLS], "localhost", 3000, &r);
	if (r.st != TLS_ERR_HANDSHAKE && r.st != TLS_ERR_CLOSED)
		fail_msg("expected a handshake failure, got %s: %s", tls_status_str(r.st), r.err);
	tls_ctx_free(&ctx);
}

static void test_refused_is_io_error(void **state)
{
	struct fixture *f = *state;
	struct tls_ctx *ctx = new_ctx(f, true);
	struct result r;

	connect_to(ctx, f->closed_port, "localhost", 3000, &r);
	assert_int_equal(r.st, TLS_ERR_IO);
	assert_non_null(strstr(r.err, "refused"));
	assert_true(r.not_after == -1);
	tls_ctx_free(&ctx);
}

/* A peer that accepts TCP but never answers the ClientHello. */
static void test_handshake_timeout(void **state)
{
	struct fixture *f = *state;
	struct tls_ctx *ctx = new_ctx(f, true);
	struct timespec t0, t1;
	struct result r;
	double ms;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	connect_to(ctx, f->silent_port, "localhost", 200, &r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	assert_int_equal(r.st, TLS_ERR_TIMEOUT);
	assert_non_null(strstr(r.err, "handshake"));
	assert_true(ms >= 150 && ms < 5000);
	tls_ctx_free(&ctx);
}

/* The context may be released while a connection made from it lives on. */
static void test_ctx_outlived_by_conn(void **state)
{
	struct fixture *f = *state;
	struct tls_ctx *ctx = new_ctx(f, true);
	struct result r;
	char resp[4096];

	connect_to(ctx, f->port[SRV_GOOD], "localhost", 3000, &r);
	assert_int_equal(r.st, TLS_OK);
	tls_ctx_free(&ctx);
	exchange(r.conn, resp, sizeof(resp));
	assert_non_null(strstr(resp, "hello"));
	close_result(&r);
}

/* Cancelling a pending connect calls nothing back and leaks nothing. */
static void test_cancel(void **state)
{
	struct fixture *f = *state;
	struct tls_ctx *ctx = new_ctx(f, true);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(f->silent_port),
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct result r = { 0 };
	char err[128];
	struct tls_connect *op;

	op = tls_connect_start(loop, ctx, (struct sockaddr *)&sin, sizeof(sin), "localhost", 1000,
	                       on_done, &r, err, sizeof(err));
	assert_non_null(op);
	ev_run(loop, EVRUN_NOWAIT);
	tls_connect_cancel(&op);
	assert_null(op);
	ev_run(loop, 0); /* nothing left: returns at once */
	assert_int_equal(r.calls, 0);
	ev_loop_destroy(loop);
	tls_ctx_free(&ctx);
	tls_ctx_free(&ctx); /* NULL: no-op */
	tls_connect_cancel(&op);
}

static void test_bad_ca_file(void **state)
{
	char err[256] = "";
	struct tls_ctx *ctx = tls_ctx_new("/nonexistent/ca.pem", true, err, sizeof(err));

	assert_null(ctx);
	assert_non_null(strstr(err, "/nonexistent/ca.pem"));
}

int main(int argc, char **argv)
{
	const char *base = argc > 0 ? strrchr(argv[0], '/') : NULL;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backend_name),
		cmocka_unit_test(test_good_backend_passes),
		cmocka_unit_test(test_good_backend_by_ip),
		cmocka_unit_test(test_expired_fails),
		cmocka_unit_test(test_wrong_name_fails),
		cmocka_unit_test(test_wrong_ip_fails),
		cmocka_unit_test(test_unknown_ca_fails),
		cmocka_unit_test(test_no_verify_reports_expiry),
		cmocka_unit_test(test_old_tls_refused),
		cmocka_unit_test(test_refused_is_io_error),
		cmocka_unit_test(test_handshake_timeout),
		cmocka_unit_test(test_ctx_outlived_by_conn),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_bad_ca_file),
	};

	/* A peer that hangs up makes write() raise SIGPIPE: ignore it, as
	 * every program using tls.h must (see tls.h). */
	signal(SIGPIPE, SIG_IGN);
	base = base ? base + 1 : (argc > 0 ? argv[0] : "");
	if (strncmp(base, "test_tls_", 9) == 0)
		expected_backend = base + 9;
	return cmocka_run_group_tests_name(tls_backend_name(), tests, group_setup, group_teardown);
}
