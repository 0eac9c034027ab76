/*
 * tls/tls_openssl.c — the OpenSSL 3 back end of tls.h.
 *
 * One SSL_CTX per tls_ctx (client method, TLS 1.2 minimum, the CA file as
 * trust store), one SSL per tls_conn on the caller's non-blocking fd. The
 * verification callback records the leaf's notAfter so that the expiry is
 * known even when verification fails, and the verification result is turned
 * into the tls_status that says why.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls_int.h"

/* The OpenSSL object behind a connection. */
static SSL *ssl_of(const struct tls_conn *c)
{
	return c->lib;
}

/* Returns the backend's name, fixed at build time. */
const char *tls_backend_name(void)
{
	return "openssl";
}

/* Returns OpenSSL's own version text (of the library loaded at run time). */
const char *tls_backend_version(void)
{
	return OpenSSL_version(OPENSSL_VERSION);
}

/* Appends the oldest queued OpenSSL error to prefix into buf, and empties
 * the thread's error queue so that the next call starts clean. */
static void ssl_err_text(char *buf, size_t len, const char *prefix)
{
	unsigned long e = ERR_get_error();
	char detail[200];

	if (e == 0) {
		tls_fmt(buf, len, "%s", prefix);
	} else {
		ERR_error_string_n(e, detail, sizeof(detail));
		tls_fmt(buf, len, "%s: %s", prefix, detail);
	}
	ERR_clear_error();
}

/* Converts an ASN1_TIME to unix seconds, -1 when it cannot be read. */
static int64_t asn1_time_to_unix(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return -1;
	return tls_tm_to_unix(&tm);
}

/* Verification callback: keeps OpenSSL's verdict (preverify) unchanged and
 * records the leaf certificate's expiry on the connection. */
static int verify_cb(int preverify, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;

	if (c != NULL && c->magic == TLS_CONN_MAGIC && X509_STORE_CTX_get_error_depth(store) == 0) {
		X509 *leaf = X509_STORE_CTX_get_current_cert(store);
		if (leaf != NULL)
			c->not_after = asn1_time_to_unix(X509_get0_notAfter(leaf));
	}
	return preverify;
}

/* Creates the client context. ca_file NULL means the system trust store.
 * Returns NULL with err filled on failure. */
struct tls_ctx *tls_ctx_new(const char *ca_file, bool verify, char *err, size_t errlen)
{
	struct tls_ctx *ctx;
	SSL_CTX *sctx;

	ctx = tls_ctx_alloc(verify, err, errlen);
	if (ctx == NULL)
		return NULL;
	ctx->lib = sctx = SSL_CTX_new(TLS_client_method());
	if (sctx == NULL) {
		ssl_err_text(err, errlen, "SSL_CTX_new");
		goto out_free_ctx;
	}
	if (SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION) != 1) {
		ssl_err_text(err, errlen, "cannot set TLS 1.2 as minimum version");
		goto out_free_ctx;
	}
	SSL_CTX_set_mode(sctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(sctx, ca_file, NULL) != 1) {
			char prefix[TLS_ERR_TEXT];
			tls_fmt(prefix, sizeof(prefix), "cannot load CA file %s", ca_file);
			ssl_err_text(err, errlen, prefix);
			goto out_free_ctx;
		}
	} else if (SSL_CTX_set_default_verify_paths(sctx) != 1) {
		ssl_err_text(err, errlen, "cannot load the system CA store");
		goto out_free_ctx;
	}
	SSL_CTX_set_verify(sctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, verify_cb);
	return ctx;

out_free_ctx:
	tls_ctx_free(&ctx); /* frees sctx too */
	return NULL;
}

/* Back-end hook of tls_ctx_free(). */
void tls_lib_ctx_free(void *lib)
{
	SSL_CTX_free(lib);
}

/* Wraps fd; sets SNI and the name to verify (see tls.h). */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *sni, char *err, size_t errlen)
{
	struct tls_conn *c;
	SSL *ssl;

	c = tls_conn_alloc(ctx, fd, err, errlen);
	if (c == NULL)
		return NULL;
	c->lib = ssl = SSL_new(ctx->lib);
	if (ssl == NULL) {
		ssl_err_text(err, errlen, "SSL_new");
		goto out_free_conn;
	}
	if (SSL_set_fd(ssl, fd) != 1) {
		ssl_err_text(err, errlen, "SSL_set_fd");
		goto out_free_conn;
	}
	SSL_set_app_data(ssl, c);
	SSL_set_connect_state(ssl);
	if (sni != NULL && *sni != '\0') {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
		if (tls_is_ip_literal(sni)) {
			if (X509_VERIFY_PARAM_set1_ip_asc(param, sni) != 1) {
				ssl_err_text(err, errlen, "cannot set the IP address to verify");
				goto out_free_conn;
			}
		} else {
			X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (SSL_set_tlsext_host_name(ssl, sni) != 1 || SSL_set1_host(ssl, sni) != 1) {
				ssl_err_text(err, errlen, "cannot set the server name");
				goto out_free_conn;
			}
		}
	}
	return c;

out_free_conn:
	tls_conn_free(&c); /* frees ssl too */
	return NULL;
}

/* Back-end hook of tls_conn_free(). */
void tls_lib_conn_free(void *lib)
{
	SSL_free(lib);
}

/* Maps a certificate verification error to the status that names it. */
static enum tls_status verify_status(long v)
{
	switch (v) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return TLS_ERR_VERIFY_EXPIRED;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return TLS_ERR_VERIFY_NAME;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return TLS_ERR_VERIFY_UNKNOWN_CA;
	default:
		return TLS_ERR_VERIFY_OTHER;
	}
}

/* Turns the result r of an SSL_* call into a status, filling c->err for
 * errors. what names the operation for the text ("handshake", "read"...). */
static enum tls_status conn_status(struct tls_conn *c, int r, const char *what)
{
	int e = SSL_get_error(ssl_of(c), r);
	int saved_errno = errno;
	long v;

	switch (e) {
	case SSL_ERROR_NONE:
		return TLS_OK;
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		tls_fmt(c->err, sizeof(c->err), "%s: peer closed the connection", what);
		return TLS_ERR_CLOSED;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (saved_errno == 0) {
			tls_fmt(c->err, sizeof(c->err), "%s: peer closed the connection", what);
			return TLS_ERR_CLOSED;
		}
		tls_fmt(c->err, sizeof(c->err), "%s: %s", what, strerror(saved_errno));
		return TLS_ERR_IO;
	default:
		break;
	}
	v = SSL_get_verify_result(ssl_of(c));
	if (v != X509_V_OK && SSL_get_verify_mode(ssl_of(c)) != SSL_VERIFY_NONE) {
		ERR_clear_error();
		tls_fmt(c->err, sizeof(c->err), "certificate verification failed: %s",
		        X509_verify_cert_error_string(v));
		return verify_status(v);
	}
	if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		ERR_clear_error();
		tls_fmt(c->err, sizeof(c->err), "%s: peer closed the connection", what);
		return TLS_ERR_CLOSED;
	}
	ssl_err_text(c->err, sizeof(c->err), what);
	return TLS_ERR_HANDSHAKE;
}

/* Advances the handshake on readiness; see tls.h. */
enum tls_status tls_conn_handshake(struct tls_conn *c)
{
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(ssl_of(c));
	if (r == 1) {
		X509 *peer = SSL_get0_peer_certificate(ssl_of(c));
		if (peer != NULL)
			c->not_after = asn1_time_to_unix(X509_get0_notAfter(peer));
		return TLS_OK;
	}
	return conn_status(c, r, "handshake");
}

/* Reads application data; 0 means the peer closed (with or without a
 * close_notify: HTTP servers often skip it). */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len, enum tls_status *st)
{
	size_t got = 0;
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_read_ex(ssl_of(c), buf, len, &got);
	if (r == 1) {
		*st = TLS_OK;
		return (ssize_t)got;
	}
	*st = conn_status(c, r, "read");
	return *st == TLS_ERR_CLOSED ? 0 : -1;
}

/* Writes application data; partial writes are not enabled, so a success
 * covers the whole buffer. */
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len, enum tls_status *st)
{
	size_t put = 0;
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_write_ex(ssl_of(c), buf, len, &put);
	if (r == 1) {
		*st = TLS_OK;
		return (ssize_t)put;
	}
	*st = conn_status(c, r, "write");
	return -1;
}

/* Sends close_notify once, without waiting for the peer's. */
int tls_conn_shutdown(struct tls_conn *c)
{
	int r;

	ERR_clear_error();
	r = SSL_shutdown(ssl_of(c));
	ERR_clear_error();
	return r >= 0 ? 0 : -1;
}

/* Returns "TLSv1.3"-style text, "" before the handshake completes. */
const char *tls_conn_version(const struct tls_conn *c)
{
	return SSL_is_init_finished(ssl_of(c)) ? SSL_get_version(ssl_of(c)) : "";
}

/* Returns the negotiated suite in OpenSSL's naming, "" before. */
const char *tls_conn_cipher(const struct tls_conn *c)
{
	const char *name = SSL_is_init_finished(ssl_of(c)) ? SSL_get_cipher_name(ssl_of(c)) : NULL;

	return name ? name : "";
}
