/* A log file written without blocking the loop: lines are appended to a
 * buffer in memory, and the buffer goes to the file from libuv's
 * threadpool (uv_fs_write) once it holds RL_SINK_FLUSH bytes or its
 * oldest line is RL_SINK_DELAY_MS old, one write at a time. The access
 * log's (server.c) only user.
 *
 * Owns: each rl_sink, its two buffers, its timer and its file descriptor
 * (not stdout's). It counts its timer and a write in flight in the io's
 * handles, so a state that closes runs the loop until they are done.
 * May call: conn.h (rl_io's count only), base.h, libuv. */
#ifndef RL_SINK_H
#define RL_SINK_H

#include "conn.h"

#define RL_SINK_FLUSH (64 * 1024)
#define RL_SINK_DELAY_MS 200
/* Past this many bytes waiting behind a write in flight (a disk slower
 * than the requests), lines are dropped and counted. */
#define RL_SINK_MAX (8 * 1024 * 1024)

typedef struct rl_sink rl_sink;

/* Open path for appending ("-": standard output). NULL and *err set when it
 * cannot be opened (a static message or one made with strerror). */
rl_sink *rl__sink_open(rl_io *io, const char *path, char *err, size_t errlen);
/* Room for n more bytes at the end of the pending lines, or NULL when the
 * line must be dropped (counted); the caller fills it and calls commit. */
char *rl__sink_reserve(rl_sink *s, size_t n);
void rl__sink_commit(rl_sink *s, size_t n);
/* "30/Nov/2026:13:04:20 +0000": the time for a log line, made once a
 * second (UTC). */
const char *rl__sink_clf_time(rl_sink *s);
/* Write what is pending and free the sink: at once (a blocking write) when
 * no write is in flight, else from that write's completion. */
void rl__sink_close(rl_sink *s);

#endif
