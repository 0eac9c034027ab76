/*
 * tls/tls_wolfssl.c — the wolfSSL 5.5 back end of tls.h, on wolfSSL's
 * native API (wolfssl/ssl.h, options.h first so the library's build
 * configuration is seen), not its OpenSSL compatibility headers.
 *
 * The only wolfSSL_X509_* / ASN1_TIME calls used are the wolfSSL-prefixed
 * accessors that read the certificate's notAfter; the native API has no
 * other way to reach the parsed date.
 *
 * Debian's wolfSSL defines OPENSSL_NO_EC although ECC is built in, so the
 * ECC test below is on HAVE_ECC.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tls_int.h"

#ifndef HAVE_ECC
#error "wolfSSL built without ECC: seedgate's certificates are ECDSA P-256"
#endif

/* The wolfSSL object behind a connection. */
static WOLFSSL *ssl_of(const struct tls_conn *c)
{
	return c->lib;
}

static pthread_once_t wolf_once = PTHREAD_ONCE_INIT;
static int wolf_init_rc;

/* Once per process (pthread_once): wolfSSL_Init() is not idempotent-safe
 * under concurrent first use. */
static void wolf_init(void)
{
	wolf_init_rc = wolfSSL_Init();
}

/* Returns the backend's name, fixed at build time. */
const char *tls_backend_name(void)
{
	return "wolfssl";
}

/* Returns "wolfSSL x.y.z" for the library loaded at run time. */
const char *tls_backend_version(void)
{
	static char text[48];

	if (text[0] == '\0')
		tls_fmt(text, sizeof(text), "wolfSSL %s", wolfSSL_lib_version());
	return text;
}

/* Text for a wolfSSL error code, prefixed. */
static void wolf_err_text(char *buf, size_t len, const char *prefix, int code)
{
	char detail[WOLFSSL_MAX_ERROR_SZ];

	wolfSSL_ERR_error_string_n((unsigned long)code, detail, sizeof(detail));
	tls_fmt(buf, len, "%s: %s (%d)", prefix, detail, code);
}

/* Reads a certificate's notAfter as unix seconds, -1 when unknown. */
static int64_t x509_not_after(WOLFSSL_X509 *x)
{
	WOLFSSL_ASN1_TIME *t = x ? wolfSSL_X509_get_notAfter(x) : NULL;
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (t == NULL || wolfSSL_ASN1_TIME_to_tm(t, &tm) != WOLFSSL_SUCCESS)
		return -1;
	return tls_tm_to_unix(&tm);
}

/* Verification callback (wolfSSL calls it for every certificate, also on
 * success, in this build: WOLFSSL_ALWAYS_VERIFY_CB). Keeps wolfSSL's
 * verdict, records the leaf's expiry and the first error seen. */
static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
	struct tls_conn *c = store ? store->userCtx : NULL;

	if (c == NULL || c->magic != TLS_CONN_MAGIC)
		return preverify;
	if (wolfSSL_X509_STORE_CTX_get_error_depth(store) == 0) {
		WOLFSSL_X509 *leaf = wolfSSL_X509_STORE_CTX_get_current_cert(store);
		int64_t t = x509_not_after(leaf);
		if (t != -1)
			c->not_after = t;
	}
	if (!preverify && c->verify_error == 0)
		c->verify_error = store->error;
	return preverify;
}

/* Creates the client context; see tls.h. */
struct tls_ctx *tls_ctx_new(const char *ca_file, bool verify, char *err, size_t errlen)
{
	struct tls_ctx *ctx;
	WOLFSSL_CTX *wctx;
	int rc;

	pthread_once(&wolf_once, wolf_init);
	if (wolf_init_rc != WOLFSSL_SUCCESS) {
		wolf_err_text(err, errlen, "wolfSSL_Init", wolf_init_rc);
		return NULL;
	}
	ctx = tls_ctx_alloc(verify, err, errlen);
	if (ctx == NULL)
		return NULL;
	ctx->lib = wctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
	if (wctx == NULL) {
		tls_fmt(err, errlen, "wolfSSL_CTX_new failed");
		goto out_free_ctx;
	}
	rc = wolfSSL_CTX_SetMinVersion(wctx, WOLFSSL_TLSV1_2);
	if (rc != WOLFSSL_SUCCESS) {
		wolf_err_text(err, errlen, "cannot set TLS 1.2 as minimum version", rc);
		goto out_free_ctx;
	}
	if (ca_file != NULL) {
		rc = wolfSSL_CTX_load_verify_locations(wctx, ca_file, NULL);
		if (rc != WOLFSSL_SUCCESS) {
			char prefix[TLS_ERR_TEXT];
			tls_fmt(prefix, sizeof(prefix), "cannot load CA file %s", ca_file);
			wolf_err_text(err, errlen, prefix, rc);
			goto out_free_ctx;
		}
	} else {
		rc = wolfSSL_CTX_load_system_CA_certs(wctx);
		if (rc != WOLFSSL_SUCCESS) {
			wolf_err_text(err, errlen, "cannot load the system CA store", rc);
			goto out_free_ctx;
		}
	}
	wolfSSL_CTX_set_verify(wctx, verify ? WOLFSSL_VERIFY_PEER : WOLFSSL_VERIFY_NONE, verify_cb);
	return ctx;

out_free_ctx:
	tls_ctx_free(&ctx); /* frees wctx too */
	return NULL;
}

/* Back-end hook of tls_ctx_free(). */
void tls_lib_ctx_free(void *lib)
{
	wolfSSL_CTX_free(lib);
}

/* Wraps fd; sets SNI and the name to verify (see tls.h). wolfSSL checks
 * the name against the SANs (and the CN when there are none); IP literals
 * are matched the same way, against the certificate's IP SANs. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *sni, char *err, size_t errlen)
{
	struct tls_conn *c;
	WOLFSSL *ssl;
	int rc;

	c = tls_conn_alloc(ctx, fd, err, errlen);
	if (c == NULL)
		return NULL;
	c->lib = ssl = wolfSSL_new(ctx->lib);
	if (ssl == NULL) {
		tls_fmt(err, errlen, "wolfSSL_new failed");
		goto out_free_conn;
	}
	rc = wolfSSL_set_fd(ssl, fd);
	if (rc != WOLFSSL_SUCCESS) {
		wolf_err_text(err, errlen, "wolfSSL_set_fd", rc);
		goto out_free_conn;
	}
	wolfSSL_SetCertCbCtx(ssl, c);
	if (sni != NULL && *sni != '\0') {
		if (!tls_is_ip_literal(sni)) {
			rc = wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, sni, (unsigned short)strlen(sni));
			if (rc != WOLFSSL_SUCCESS) {
				wolf_err_text(err, errlen, "cannot set SNI", rc);
				goto out_free_conn;
			}
		}
		if (ctx->verify) {
			rc = wolfSSL_check_domain_name(ssl, sni);
			if (rc != WOLFSSL_SUCCESS) {
				wolf_err_text(err, errlen, "cannot set the name to verify", rc);
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
	wolfSSL_free(lib);
}

/* Maps a wolfSSL certificate error code to the status that names it. */
static enum tls_status verify_status(int code)
{
	switch (code) {
	case ASN_AFTER_DATE_E:
	case ASN_BEFORE_DATE_E:
		return TLS_ERR_VERIFY_EXPIRED;
	case DOMAIN_NAME_MISMATCH:
		return TLS_ERR_VERIFY_NAME;
	case ASN_NO_SIGNER_E:
	case ASN_SELF_SIGNED_E:
		return TLS_ERR_VERIFY_UNKNOWN_CA;
	default:
		return TLS_ERR_VERIFY_OTHER;
	}
}

/* True for the codes wolfSSL uses for certificate verification failures. */
static bool is_verify_error(int code)
{
	return verify_status(code) != TLS_ERR_VERIFY_OTHER || code == VERIFY_CERT_ERROR;
}

/* Turns the result r of a wolfSSL_* call into a status, filling c->err
 * for errors. what names the operation for the text. */
static enum tls_status conn_status(struct tls_conn *c, int r, const char *what)
{
	int e = wolfSSL_get_error(ssl_of(c), r);
	int saved_errno = errno;

	switch (e) {
	case WOLFSSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case WOLFSSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case WOLFSSL_ERROR_ZERO_RETURN:
	case ZERO_RETURN:
	case SOCKET_PEER_CLOSED_E:
		tls_fmt(c->err, sizeof(c->err), "%s: peer closed the connection", what);
		return TLS_ERR_CLOSED;
	case SOCKET_ERROR_E:
		if (saved_errno == 0 || saved_errno == ECONNRESET) {
			tls_fmt(c->err, sizeof(c->err), "%s: %s", what,
			        saved_errno ? strerror(saved_errno) : "peer closed the connection");
			return saved_errno ? TLS_ERR_IO : TLS_ERR_CLOSED;
		}
		tls_fmt(c->err, sizeof(c->err), "%s: %s", what, strerror(saved_errno));
		return TLS_ERR_IO;
	default:
		break;
	}
	if (c->verify_error != 0 && c->ctx->verify) {
		int code = is_verify_error(c->verify_error) ? c->verify_error : e;
		wolf_err_text(c->err, sizeof(c->err), "certificate verification failed", code);
		return verify_status(code);
	}
	if (c->ctx->verify && is_verify_error(e)) {
		wolf_err_text(c->err, sizeof(c->err), "certificate verification failed", e);
		return verify_status(e);
	}
	wolf_err_text(c->err, sizeof(c->err), what, e);
	return TLS_ERR_HANDSHAKE;
}

/* Advances the handshake on readiness; see tls.h. */
enum tls_status tls_conn_handshake(struct tls_conn *c)
{
	int r;

	errno = 0;
	r = wolfSSL_connect(ssl_of(c));
	if (r == WOLFSSL_SUCCESS)
		return TLS_OK;
	return conn_status(c, r, "handshake");
}

/* Reads application data; 0 means the peer closed. wolfSSL takes int
 * lengths, so len is clamped. */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t len, enum tls_status *st)
{
	int n = len > INT32_MAX ? INT32_MAX : (int)len;
	int r;

	errno = 0;
	r = wolfSSL_read(ssl_of(c), buf, n);
	if (r > 0) {
		*st = TLS_OK;
		return r;
	}
	*st = conn_status(c, r, "read");
	return *st == TLS_ERR_CLOSED ? 0 : -1;
}

/* Writes application data (whole buffer on success). */
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len, enum tls_status *st)
{
	int n = len > INT32_MAX ? INT32_MAX : (int)len;
	int r;

	errno = 0;
	r = wolfSSL_write(ssl_of(c), buf, n);
	if (r > 0) {
		*st = TLS_OK;
		return r;
	}
	*st = conn_status(c, r, "write");
	return -1;
}

/* Sends close_notify once; WOLFSSL_SHUTDOWN_NOT_DONE (the peer's has not
 * arrived) counts as sent. */
int tls_conn_shutdown(struct tls_conn *c)
{
	int r = wolfSSL_shutdown(ssl_of(c));

	return r == WOLFSSL_SUCCESS || r == WOLFSSL_SHUTDOWN_NOT_DONE ? 0 : -1;
}

/* Returns "TLSv1.3"-style text, "" before the handshake completes. */
const char *tls_conn_version(const struct tls_conn *c)
{
	return wolfSSL_is_init_finished(ssl_of(c)) ? wolfSSL_get_version(ssl_of(c)) : "";
}

/* Returns the negotiated suite in wolfSSL's naming, "" before. */
const char *tls_conn_cipher(const struct tls_conn *c)
{
	const char *name = wolfSSL_is_init_finished(ssl_of(c)) ? wolfSSL_get_cipher_name(ssl_of(c)) : NULL;

	return name ? name : "";
}
