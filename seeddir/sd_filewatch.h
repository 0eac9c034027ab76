/*
 * sd_filewatch.h — follow one file by name, on a libev loop.
 *
 * inotify watches the file's directory, not the file: an editor or a
 * deploy tool that writes a new file and renames it over the old one (the
 * safe way to replace a file) keeps being seen, and so does a file that
 * is deleted and created again. Every event naming the file (or an
 * inotify queue overflow, which may have hidden one) restarts a settle
 * timer; CHANGED runs once the file has been quiet that long, so a file
 * written in several steps is read once, when it is whole.
 *
 * Used by the seed directory's file source (sd_source.c) and by the route
 * agent's --auth-keys file.
 */
#ifndef SEEDGATE_SD_FILEWATCH_H
#define SEEDGATE_SD_FILEWATCH_H

#include <stddef.h>

#include <ev.h>

struct sd_filewatch;
typedef void (*sd_filewatch_cb)(struct sd_filewatch *w, void *arg);

struct sd_filewatch {
	struct ev_loop *loop;
	int fd;                      /* inotify, -1 when stopped */
	char *base;                  /* the file's name in its directory */
	ev_io io;
	ev_timer settle;
	sd_filewatch_cb changed;
	void *arg;
};

/* A watch that watches nothing yet (sd_filewatch_stop() is safe on it). */
void sd_filewatch_init(struct sd_filewatch *w);
/* Starts following PATH: CHANGED(w, ARG) after SETTLE seconds without a
 * new event. The directory must exist (the file need not). 0, or -1 with
 * ERR set ("inotify on DIR: reason"). */
int sd_filewatch_start(struct sd_filewatch *w, struct ev_loop *loop, const char *path, double settle,
                       sd_filewatch_cb changed, void *arg, char *err, size_t errlen);
/* Stops and frees what start took; the watch can be started again. */
void sd_filewatch_stop(struct sd_filewatch *w);

#endif
