/* hc_sdnotify.h — tell systemd a daemon is ready (Type=notify units).
 *
 * The notify protocol is a datagram of "KEY=VALUE" lines sent to the unix
 * socket named by $NOTIFY_SOCKET (a path, or "@name" in the abstract
 * namespace). It is stable and documented by systemd (sd_notify(3)), so we
 * speak it ourselves instead of linking libsystemd: no new library on the
 * daemons, and nothing happens at all when the variable is unset (run by
 * hand, by the tests, by the demo). */
#ifndef HC_SDNOTIFY_H
#define HC_SDNOTIFY_H

/* Send STATE (e.g. "READY=1") to $NOTIFY_SOCKET. Returns 1 when sent, 0 when
 * there is no NOTIFY_SOCKET, -1 on an error (errno set); an error never
 * stops a daemon: systemd then reports the start as timed out. */
int hc_sd_notify(const char *state);

#endif
