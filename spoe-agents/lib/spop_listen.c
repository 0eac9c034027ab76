/*
 * spop_listen.c — listening sockets for the runtime.
 *
 * One socket per listener, shared by every worker's loop: each worker
 * watches the same non-blocking fd and the worker whose accept() wins takes
 * the connection.
 *
 * TCP ("host:port", "[v6]:port", "*:port", ":port") is bound WITHOUT
 * SO_REUSEPORT, on purpose. With one SO_REUSEPORT socket per worker, a
 * second agent started on the same port (an old one not stopped, a typo in
 * a unit file) binds without error and the kernel hands it half of the new
 * connections, possibly with an old directory and no health feed. A plain
 * bind makes the kernel refuse any second listener, whatever program it
 * is, atomically: no probe-then-bind window for two agents started at the
 * same moment to slip through (a probe socket without SO_REUSEPORT, closed
 * before the real ones bind, has that window). What sharing one socket
 * costs: every idle worker is woken for a new connection and all but one
 * get EAGAIN. SPOP connections are few and long-lived (HAProxy keeps them
 * open), so that is noise, and whichever worker is idle takes the next one.
 * SO_REUSEADDR stays: it only lets a restart bind while old connections
 * sit in TIME_WAIT; on Linux it never lets two sockets listen on one port.
 *
 * Unix ("/path" or "unix:path"): a stale socket file from a previous run is
 * removed only if nothing answers on it.
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

/* The message for a listener address someone else holds. */
static void in_use(char *err, size_t errlen, const char *addr, const char *agent_name)
{
	snprintf(err, errlen, "%s is already in use (another %s?)", addr, agent_name);
}

/* Creates, binds and listens one TCP socket for ai. Returns the fd or -1
 * with err filled. */
static int tcp_socket(const struct addrinfo *ai, const char *addr, const char *agent_name, char *err,
		      size_t errlen)
{
	int one = 1;
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);

	if (fd == -1) {
		snprintf(err, errlen, "%s: socket: %s", addr, strerror(errno));
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1) {
		snprintf(err, errlen, "%s: setsockopt: %s", addr, strerror(errno));
		goto out_close;
	}
	if (ai->ai_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
		if (errno == EADDRINUSE)
			in_use(err, errlen, addr, agent_name);
		else
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

static int open_tcp(struct spop_listener *l, const char *addr, const char *agent_name, char *err, size_t errlen)
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
	l->fd = tcp_socket(res, addr, agent_name, err, errlen);
	freeaddrinfo(res);
	if (l->fd == -1)
		return -1;
	l->port = bound_port(l->fd);
	return 0;
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

static int open_unix(struct spop_listener *l, const char *path, const char *agent_name, char *err, size_t errlen)
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
			in_use(err, errlen, path, agent_name);
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
	l->fd = fd;
	return 0;
out_close:
	close(fd);
	return -1;
}

/* Opens listener l on addr. An address held by another process fails with
 * "ADDR is already in use (another <agent_name>?)". Returns 0 or -1 with
 * err filled (nothing left open then). */
int spop_listener_open(struct spop_listener *l, const char *addr, const char *agent_name, char *err,
		       size_t errlen)
{
	memset(l, 0, sizeof(*l));
	l->fd = -1;
	snprintf(l->addr, sizeof(l->addr), "%s", addr);
	if (strncmp(addr, "unix:", 5) == 0)
		return open_unix(l, addr + 5, agent_name, err, errlen);
	if (addr[0] == '/' || addr[0] == '.')
		return open_unix(l, addr, agent_name, err, errlen);
	return open_tcp(l, addr, agent_name, err, errlen);
}

/* Closes l's socket (and removes a unix socket's file). */
void spop_listener_close(struct spop_listener *l)
{
	if (l->fd != -1)
		close(l->fd);
	l->fd = -1;
	if (l->is_unix && l->path[0]) {
		unlink(l->path);
		l->path[0] = 0;
	}
}
