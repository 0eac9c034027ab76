/*
 * spop_listen.c — listening sockets for the runtime.
 *
 * TCP ("host:port", "[v6]:port", "*:port", ":port"): one SO_REUSEPORT
 * socket per worker, all bound to the same address, so the kernel spreads
 * new connections over the workers without a shared accept lock. Port 0
 * asks the kernel for a port once; the other workers bind that port.
 *
 * Unix ("/path" or "unix:path"): one socket, shared by every worker's loop
 * (each watches the same non-blocking fd; the worker whose accept() wins
 * takes the connection). SO_REUSEPORT has no meaning there, and one accept
 * queue feeding all loops keeps every core busy; a stale socket file from
 * a previous run is removed only if nothing answers on it.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "spop_int.h"

#define SPOP_BACKLOG 1024

/* Splits "host:port" / "[v6]:port" into host (empty = any) and port. */
static int split_host_port(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	size_t hl;

	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');

		if (!end || end[1] != ':')
			return -1;
		hl = (size_t)(end - addr - 1);
		if (hl >= hostlen)
			return -1;
		memcpy(host, addr + 1, hl);
		host[hl] = 0;
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -1;
		hl = (size_t)(colon - addr);
		if (hl >= hostlen)
			return -1;
		memcpy(host, addr, hl);
		host[hl] = 0;
		if (strcmp(host, "*") == 0)
			host[0] = 0;
	}
	if (!colon[1] || strlen(colon + 1) >= portlen)
		return -1;
	snprintf(port, portlen, "%s", colon + 1);
	return 0;
}

/* Creates, binds and listens one TCP socket for ai. Returns the fd or -1
 * with err filled. */
static int tcp_socket(const struct addrinfo *ai, const char *addr, char *err, size_t errlen)
{
	int one = 1;
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);

	if (fd == -1) {
		snprintf(err, errlen, "%s: socket: %s", addr, strerror(errno));
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
		snprintf(err, errlen, "%s: setsockopt: %s", addr, strerror(errno));
		goto out_close;
	}
	if (ai->ai_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
		snprintf(err, errlen, "%s: bind: %s", addr, strerror(errno));
		goto out_close;
	}
	if (listen(fd, SPOP_BACKLOG) == -1) {
		snprintf(err, errlen, "%s: listen: %s", addr, strerror(errno));
		goto out_close;
	}
	return fd;
out_close:
	close(fd);
	return -1;
}

/* Reads back the port a bound socket got. */
static unsigned bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

static int open_tcp(struct spop_listener *l, const char *addr, unsigned nworkers, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char host[256], port[16];
	int rc;

	if (split_host_port(addr, host, sizeof(host), port, sizeof(port)) == -1) {
		snprintf(err, errlen, "%s: expected host:port, [v6]:port, /path or unix:path", addr);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", addr, gai_strerror(rc));
		return -1;
	}
	for (unsigned i = 0; i < nworkers; i++) {
		if (i == 1 && l->port) {
			/* port 0: the others bind the port the first one got */
			if (res->ai_family == AF_INET)
				((struct sockaddr_in *)res->ai_addr)->sin_port = htons((uint16_t)l->port);
			else if (res->ai_family == AF_INET6)
				((struct sockaddr_in6 *)res->ai_addr)->sin6_port = htons((uint16_t)l->port);
		}
		l->fds[i] = tcp_socket(res, addr, err, errlen);
		if (l->fds[i] == -1)
			goto out_close;
		if (i == 0)
			l->port = bound_port(l->fds[0]);
	}
	freeaddrinfo(res);
	return 0;
out_close:
	freeaddrinfo(res);
	spop_listener_close(l, nworkers);
	return -1;
}

/* True if something accepts connections on the unix socket path. */
static bool unix_alive(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd == -1)
		return false;
	alive = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return alive;
}

static int open_unix(struct spop_listener *l, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (!path[0] || strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "%s: unix socket path empty or too long", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		if (unix_alive(&sun)) {
			snprintf(err, errlen, "%s: another process listens on this socket", path);
			return -1;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "%s: socket: %s", path, strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		snprintf(err, errlen, "%s: bind: %s", path, strerror(errno));
		goto out_close;
	}
	if (listen(fd, SPOP_BACKLOG) == -1) {
		snprintf(err, errlen, "%s: listen: %s", path, strerror(errno));
		unlink(path);
		goto out_close;
	}
	l->is_unix = true;
	snprintf(l->path, sizeof(l->path), "%s", path);
	l->fds[0] = fd;
	return 0;
out_close:
	close(fd);
	return -1;
}

/* Opens listener l on addr for nworkers workers. Returns 0 or -1 with err
 * filled (nothing left open then). */
int spop_listener_open(struct spop_listener *l, const char *addr, unsigned nworkers, char *err, size_t errlen)
{
	memset(l, 0, sizeof(*l));
	for (unsigned i = 0; i < SPOP_MAX_WORKERS; i++)
		l->fds[i] = -1;
	snprintf(l->addr, sizeof(l->addr), "%s", addr);
	if (strncmp(addr, "unix:", 5) == 0)
		return open_unix(l, addr + 5, err, errlen);
	if (addr[0] == '/' || addr[0] == '.')
		return open_unix(l, addr, err, errlen);
	return open_tcp(l, addr, nworkers, err, errlen);
}

/* Closes every fd of l (and removes a unix socket's file). */
void spop_listener_close(struct spop_listener *l, unsigned nworkers)
{
	for (unsigned i = 0; i < nworkers && i < SPOP_MAX_WORKERS; i++) {
		if (l->fds[i] != -1)
			close(l->fds[i]);
		l->fds[i] = -1;
	}
	if (l->is_unix && l->path[0]) {
		unlink(l->path);
		l->path[0] = 0;
	}
}
