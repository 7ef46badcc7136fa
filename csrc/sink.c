/* A log file written from the threadpool (sink.h). */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* The timer, allocated apart: it outlives the sink until its close. */
typedef struct {
  uv_timer_t t;
  rl_io *io;
} rl_sink_timer;

struct rl_sink {
  rl_io *io;
  uv_file fd;
  int own_fd;       /* opened here (not stdout): closed with the sink */
  int writing;      /* `req` is in flight with `out` */
  int closing;      /* rl__sink_close came while writing: finish, then free */
  int timer_armed;  /* the delay timer runs for the oldest pending line */
  int failed;       /* a write failed: said once, then lines are dropped */
  uint64_t dropped; /* lines dropped in this episode */
  rl_buf pending;   /* lines not yet handed to a write */
  rl_buf out;       /* the lines of the write in flight */
  uv_fs_t req;
  rl_sink_timer *timer;
  time_t sec;
  char clf[64];
};

static void start_write(rl_sink *s);

static void timer_cb(uv_timer_t *t) {
  rl_sink *s = t->data;
  s->timer_armed = 0;
  if (!s->writing && s->pending.len)
    start_write(s);
}

static void timer_closed(uv_handle_t *h) {
  rl_sink_timer *t = (rl_sink_timer *)h;
  t->io->handles--;
  free(t);
}

rl_sink *rl__sink_open(rl_io *io, const char *path, char *err, size_t errlen) {
  rl_sink *s = calloc(1, sizeof *s);
  rl_sink_timer *t = malloc(sizeof *t);
  if (s == NULL || t == NULL) {
    free(s);
    free(t);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->io = io;
  if (strcmp(path, "-") == 0) {
    s->fd = STDOUT_FILENO;
  } else {
    s->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (s->fd < 0) {
      snprintf(err, errlen, "%s: %s", path, strerror(errno));
      free(s);
      free(t);
      return NULL;
    }
    s->own_fd = 1;
  }
  uv_timer_init(io->loop, &t->t);
  uv_unref((uv_handle_t *)&t->t); /* a pending line never keeps a loop up */
  t->t.data = s;
  t->io = io;
  io->handles++;
  s->timer = t;
  return s;
}

char *rl__sink_reserve(rl_sink *s, size_t n) {
  if (s->failed || s->pending.len + n > RL_SINK_MAX ||
      rl__buf_reserve(&s->pending, n)) {
    s->dropped++;
    return NULL;
  }
  return s->pending.base + s->pending.len;
}

void rl__sink_commit(rl_sink *s, size_t n) {
  s->pending.len += n;
  if (s->writing)
    return; /* its completion looks at what piled up */
  if (s->pending.len >= RL_SINK_FLUSH) {
    start_write(s);
  } else if (!s->timer_armed) {
    s->timer_armed = 1;
    uv_timer_start(&s->timer->t, timer_cb, RL_SINK_DELAY_MS, 0);
  }
}

static void free_sink(rl_sink *s) {
  if (s->dropped)
    rl__log("access log: %llu lines dropped", (unsigned long long)s->dropped);
  if (s->own_fd)
    close(s->fd);
  rl__buf_free(&s->pending);
  rl__buf_free(&s->out);
  uv_close((uv_handle_t *)&s->timer->t, timer_closed);
  free(s);
}

/* A blocking write of everything pending: only when the sink closes. */
static void write_now(rl_sink *s) {
  size_t at = 0;
  while (at < s->pending.len && !s->failed) {
    ssize_t n = write(s->fd, s->pending.base + at, s->pending.len - at);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      s->failed = 1;
    else
      at += (size_t)n;
  }
  s->pending.len = 0;
}

static void write_cb(uv_fs_t *req) {
  rl_sink *s = req->data;
  ssize_t r = req->result;
  uv_fs_req_cleanup(req);
  s->writing = 0;
  s->io->handles--;
  if (r < 0) {
    if (!s->failed)
      rl__log("access log: write failed: %s; no more lines are written",
              uv_strerror((int)r));
    s->failed = 1;
  } else if ((size_t)r < s->out.len) {
    /* a short write (a full disk): what is left goes first next time */
    memmove(s->out.base, s->out.base + r, s->out.len - (size_t)r);
    s->out.len -= (size_t)r;
    if (rl__buf_append(&s->out, s->pending.base, s->pending.len) == 0) {
      rl_buf t = s->pending;
      s->pending = s->out;
      s->out = t;
      s->out.len = 0;
    }
  } else {
    s->out.len = 0;
    if (s->dropped) {
      rl__log("access log: %llu lines dropped (the file is written slower "
              "than requests come)",
              (unsigned long long)s->dropped);
      s->dropped = 0;
    }
  }
  if (s->closing) {
    write_now(s);
    free_sink(s);
  } else if (s->pending.len >= RL_SINK_FLUSH) {
    start_write(s);
  } else if (s->pending.len && !s->timer_armed) {
    s->timer_armed = 1;
    uv_timer_start(&s->timer->t, timer_cb, RL_SINK_DELAY_MS, 0);
  }
}

static void start_write(rl_sink *s) {
  if (s->failed) {
    s->pending.len = 0;
    return;
  }
  rl_buf t = s->out; /* swap: the lines go, the old buffer takes new ones */
  s->out = s->pending;
  s->pending = t;
  s->pending.len = 0;
  if (s->timer_armed) {
    uv_timer_stop(&s->timer->t);
    s->timer_armed = 0;
  }
  uv_buf_t b = uv_buf_init(s->out.base, (unsigned)s->out.len);
  s->req.data = s;
  if (uv_fs_write(s->io->loop, &s->req, s->fd, &b, 1, -1, write_cb) != 0) {
    uv_fs_req_cleanup(&s->req);
    s->failed = 1;
    return;
  }
  s->writing = 1;
  s->io->handles++; /* a closing state waits for it */
}

const char *rl__sink_clf_time(rl_sink *s) {
  time_t now = time(NULL);
  if (now != s->sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(s->clf, sizeof s->clf, "%02d/%s/%04d:%02d:%02d:%02d +0000",
             tm.tm_mday, rl__months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
             tm.tm_min, tm.tm_sec);
    s->sec = now;
  }
  return s->clf;
}

void rl__sink_close(rl_sink *s) {
  if (s->writing) {
    s->closing = 1; /* counted in io->handles: the loop runs until it ends */
    return;
  }
  write_now(s);
  free_sink(s);
}
