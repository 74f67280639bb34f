/*
 * The bench's native load generator: N connections over loopback, ONE request outstanding per
 * connection, epoll, one or more threads. Built by bench/native.ts with the machine's `cc` at bench
 * time (into a cache dir, never committed). Prints one JSON line on stdout.
 *
 *   loadgen --port P --connections N --duration-ms D [--warmup-ms W] [--threads T]
 *           [--rate R] [--start-at EPOCH_MS] [--host 127.0.0.1] --line TEMPLATE
 *
 * TEMPLATE is one request line; `\n`, `\r` and `\\` are unescaped and a final LF is added when it
 * has none. Placeholders: {c} the connection's number, {n} the request's number on that connection,
 * {t} the wall clock as POSIX seconds with 9 fractional digits (strictly increasing per
 * connection), {x} a coordinate that moves 0.001 each request (-50.000 .. 49.999, e.g. a Redis
 * GEOADD longitude: an unchanged score would not be a write). A reply is one line (up to LF); one starting with `?` or `-` (our `? ...`, Redis's
 * `-ERR`) counts as an error, not as a request done.
 *
 * Closed loop (default): a connection sends again as soon as its reply arrives. Open loop
 * (`--rate R`, req/s over all connections): connection k's j-th request is due at
 * start + (k + j*N)/R; a request sent late because its predecessor's reply was late counts its
 * latency from when it was due (no coordinated omission). Only replies completed inside the
 * measured window (after the warm-up) count. Latencies go into log buckets 1% wide.
 *
 * `sentP50` / `sentP99` are the same replies' latencies from when each request was actually
 * written: the server's answer time alone. In closed loop they equal `p50` / `p99`; in open
 * loop the gap is the queue of requests that waited for a late reply on their connection (one
 * outstanding per connection: at R req/s over N connections, a reply later than N/R s delays
 * the next request's send).
 *
 * Exits 2 with one line on bad flags, 1 when it cannot connect.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 2400 /* 1% wide from 1 us: up to ~25 s */
#define LINE_MAX_BYTES 4096
#define READ_BYTES 65536

typedef struct {
  int fd;
  int id;            /* global connection number, for {c} */
  uint64_t n;        /* requests sent on this connection, for {n} */
  int64_t due_ns;    /* open loop: when the next request is due */
  int64_t sent_ns;   /* when the outstanding request counts from */
  int64_t wrote_ns;  /* when it was actually written (sent_ns or later, in open loop) */
  int outstanding;
  int dead;
  size_t got;        /* bytes of the reply line read so far */
  char first;        /* first byte of the current reply line */
  int64_t last_t;    /* last {t} in ns, kept strictly increasing */
} conn_t;

typedef struct {
  conn_t *conns;
  int count;
  pthread_t thread;
  uint64_t hist[BUCKETS];
  uint64_t sent_hist[BUCKETS]; /* the same replies, from the actual write */
  uint64_t done, errors, closed;
  double max_ms;
  char error_sample[128];
} worker_t;

static const char *host = "127.0.0.1";
static int port = 0, connections = 0, threads = 1;
static int64_t duration_ms = 0, warmup_ms = 0, start_at_ms = 0;
static double rate = 0;
static char tmpl[LINE_MAX_BYTES];
static int64_t t_start, t_measure, t_end; /* CLOCK_MONOTONIC ns */

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die_usage(const char *msg) {
  fprintf(stderr, "loadgen: %s (usage: loadgen --port P --connections N --duration-ms D "
                  "[--warmup-ms W] [--threads T] [--rate R] [--start-at MS] --line TEMPLATE)\n",
          msg);
  exit(2);
}

static int bucket_of(double us) {
  if (us <= 1) return 0;
  int b = (int)(log(us) / log(1.01)) + 1;
  return b >= BUCKETS ? BUCKETS - 1 : b;
}

/* Upper edge of bucket b in ms. */
static double bucket_ms(int b) { return b == 0 ? 0.001 : pow(1.01, b) / 1000.0; }

/* The q-quantile (0..1) of `done` latencies in hist, in ms (the bucket's upper edge). */
static double quantile(const uint64_t *hist, uint64_t done, double q) {
  uint64_t want = (uint64_t)ceil(q * (double)done), seen = 0;
  for (int b = 0; b < BUCKETS && done > 0; b++) {
    seen += hist[b];
    if (seen >= want) return bucket_ms(b);
  }
  return 0;
}

/* Formats the request of connection c into out; returns its length. */
static size_t format_line(conn_t *c, char *out) {
  size_t o = 0;
  for (const char *p = tmpl; *p && o < LINE_MAX_BYTES - 64; p++) {
    if (p[0] == '{' && p[1] && p[2] == '}') {
      if (p[1] == 'c') { o += sprintf(out + o, "%d", c->id); p += 2; continue; }
      if (p[1] == 'n') { o += sprintf(out + o, "%llu", (unsigned long long)c->n); p += 2; continue; }
      if (p[1] == 'x') {
        o += sprintf(out + o, "%.3f", -50.0 + (double)(c->n % 100000) / 1000.0);
        p += 2;
        continue;
      }
      if (p[1] == 't') {
        int64_t t = wall_ns();
        if (t <= c->last_t) t = c->last_t + 1;
        c->last_t = t;
        o += sprintf(out + o, "%lld.%09lld", (long long)(t / 1000000000),
                     (long long)(t % 1000000000));
        p += 2;
        continue;
      }
    }
    out[o++] = *p;
  }
  return o;
}

static int send_request(worker_t *w, conn_t *c, int64_t counts_from) {
  char line[LINE_MAX_BYTES];
  size_t len = format_line(c, line);
  size_t off = 0;
  while (off < len) {
    ssize_t k = write(c->fd, line + off, len - off);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) continue; /* a request line is tiny: the buffer drains at once */
      c->dead = 1;
      w->closed++;
      return -1;
    }
    off += (size_t)k;
  }
  c->n++;
  c->sent_ns = counts_from;
  c->wrote_ns = mono_ns();
  c->outstanding = 1;
  c->got = 0;
  return 0;
}

static void on_reply(worker_t *w, conn_t *c, int64_t now) {
  c->outstanding = 0;
  if (now < t_measure || now > t_end) return;
  if (c->first == '?' || c->first == '-') {
    w->errors++;
    return;
  }
  double ms = (double)(now - c->sent_ns) / 1e6;
  if (ms < 0) ms = 0;
  w->hist[bucket_of(ms * 1000)]++;
  double from_write_ms = (double)(now - c->wrote_ns) / 1e6;
  w->sent_hist[bucket_of((from_write_ms < 0 ? 0 : from_write_ms) * 1000)]++;
  if (ms > w->max_ms) w->max_ms = ms;
  w->done++;
}

/* Sends the next request of c if it is due (open loop) or at once (closed loop). */
static void maybe_send(worker_t *w, conn_t *c, int64_t now) {
  if (c->dead || c->outstanding || now >= t_end) return;
  if (rate <= 0) {
    send_request(w, c, now);
    return;
  }
  if (now < c->due_ns) return;
  /* Late because the previous reply was late: latency counts from the due time. */
  int64_t from = c->due_ns;
  c->due_ns += (int64_t)(1e9 * connections / rate);
  send_request(w, c, from);
}

static void *run_worker(void *arg) {
  worker_t *w = arg;
  int ep = epoll_create1(0);
  for (int i = 0; i < w->count; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->conns[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, w->conns[i].fd, &ev);
  }
  char *buf = malloc(READ_BYTES);
  struct epoll_event evs[256];
  while (mono_ns() < t_start) {
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  int64_t now = mono_ns();
  for (int i = 0; i < w->count; i++) maybe_send(w, &w->conns[i], now);
  /* After the window, wait up to 2 s for the outstanding replies, then stop whatever happens. */
  int64_t hard_end = t_end + 2000000000LL;
  for (;;) {
    now = mono_ns();
    int pending = 0;
    int64_t next_due = INT64_MAX;
    for (int i = 0; i < w->count; i++) {
      conn_t *c = &w->conns[i];
      if (c->dead) continue;
      if (c->outstanding) pending = 1;
      else if (rate > 0 && now < t_end && c->due_ns < next_due) next_due = c->due_ns;
    }
    if (now >= t_end && !pending) break;
    if (now >= hard_end) break;
    struct timespec to;
    int64_t wait = (next_due == INT64_MAX ? (now < t_end ? t_end : hard_end) : next_due) - now;
    if (wait < 0) wait = 0;
    if (wait > 100000000) wait = 100000000;
    to.tv_sec = wait / 1000000000;
    to.tv_nsec = wait % 1000000000;
    int n = epoll_pwait2(ep, evs, 256, &to, NULL);
    if (n < 0 && errno != EINTR) break;
    now = mono_ns();
    for (int e = 0; e < n; e++) {
      conn_t *c = evs[e].data.ptr;
      ssize_t k = read(c->fd, buf, READ_BYTES);
      if (k <= 0) {
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (!c->dead) {
          c->dead = 1;
          w->closed++;
          if (!w->error_sample[0]) snprintf(w->error_sample, sizeof w->error_sample,
                                            "connection %d closed by the server", c->id);
        }
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        continue;
      }
      for (ssize_t i = 0; i < k; i++) {
        if (c->got == 0) {
          c->first = buf[i];
          if ((buf[i] == '?' || buf[i] == '-') && !w->error_sample[0]) {
            size_t m = 0;
            while (i + (ssize_t)m < k && buf[i + m] != '\n' && m < sizeof w->error_sample - 1) m++;
            memcpy(w->error_sample, buf + i, m);
            w->error_sample[m] = 0;
          }
        }
        c->got++;
        if (buf[i] == '\n') {
          if (c->outstanding) on_reply(w, c, now);
          c->got = 0;
        }
      }
      maybe_send(w, c, now);
    }
    if (rate > 0) {
      for (int i = 0; i < w->count; i++) maybe_send(w, &w->conns[i], now);
    }
  }
  free(buf);
  close(ep);
  return NULL;
}

static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) die_usage("--host must be an IPv4 address");
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

static void unescape(const char *in, char *out) {
  size_t o = 0;
  for (; *in && o < LINE_MAX_BYTES - 2; in++) {
    if (in[0] == '\\' && in[1]) {
      in++;
      out[o++] = *in == 'n' ? '\n' : *in == 'r' ? '\r' : *in == 't' ? '\t' : *in;
    } else {
      out[o++] = *in;
    }
  }
  if (o == 0 || out[o - 1] != '\n') out[o++] = '\n';
  out[o] = 0;
}

static int64_t num(const char *flag, const char *v, int64_t lo, int64_t hi) {
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || *end || x < lo || x > hi) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s wants an integer in %lld..%lld, got '%s'", flag,
             (long long)lo, (long long)hi, v);
    die_usage(msg);
  }
  return x;
}

int main(int argc, char **argv) {
  const char *line = NULL;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (!strcmp(f, "--help") || !strcmp(f, "-h")) die_usage("help");
    if (i + 1 >= argc) {
      char msg[160];
      snprintf(msg, sizeof msg, "unknown flag or missing value: %s", f);
      die_usage(msg);
    }
    const char *v = argv[++i];
    if (!strcmp(f, "--port")) port = (int)num(f, v, 1, 65535);
    else if (!strcmp(f, "--host")) host = v;
    else if (!strcmp(f, "--connections")) connections = (int)num(f, v, 1, 60000);
    else if (!strcmp(f, "--threads")) threads = (int)num(f, v, 1, 64);
    else if (!strcmp(f, "--duration-ms")) duration_ms = num(f, v, 1, 3600000);
    else if (!strcmp(f, "--warmup-ms")) warmup_ms = num(f, v, 0, 3600000);
    else if (!strcmp(f, "--start-at")) start_at_ms = num(f, v, 0, INT64_MAX);
    else if (!strcmp(f, "--rate")) {
      char *end;
      rate = strtod(v, &end);
      if (*end || rate < 0) die_usage("--rate wants a number >= 0");
    } else if (!strcmp(f, "--line")) line = v;
    else {
      char msg[160];
      snprintf(msg, sizeof msg, "unknown flag %s", f);
      die_usage(msg);
    }
  }
  if (!port || !connections || !duration_ms || !line) {
    die_usage("--port, --connections, --duration-ms and --line are required");
  }
  unescape(line, tmpl);
  if (threads > connections) threads = connections;

  conn_t *conns = calloc((size_t)connections, sizeof *conns);
  for (int i = 0; i < connections; i++) {
    conns[i].id = i;
    conns[i].fd = dial();
    if (conns[i].fd < 0) {
      fprintf(stderr, "loadgen: cannot connect to %s:%d: %s\n", host, port, strerror(errno));
      return 1;
    }
  }
  /* Start together with other generators when asked, else in 50 ms. */
  int64_t delay = start_at_ms ? start_at_ms * 1000000 - wall_ns() : 50000000;
  if (delay < 0) delay = 0;
  t_start = mono_ns() + delay;
  t_measure = t_start + warmup_ms * 1000000;
  t_end = t_measure + duration_ms * 1000000;
  for (int i = 0; i < connections; i++) {
    /* Open loop: connections' sends spread evenly over one period. */
    conns[i].due_ns = rate > 0 ? t_start + (int64_t)(1e9 * i / rate) : t_start;
  }

  worker_t *ws = calloc((size_t)threads, sizeof *ws);
  int per = connections / threads, extra = connections % threads, at = 0;
  for (int t = 0; t < threads; t++) {
    ws[t].conns = conns + at;
    ws[t].count = per + (t < extra ? 1 : 0);
    at += ws[t].count;
    pthread_create(&ws[t].thread, NULL, run_worker, &ws[t]);
  }
  static uint64_t hist[BUCKETS], sent_hist[BUCKETS];
  uint64_t done = 0, errors = 0, closed = 0;
  double max_ms = 0;
  const char *sample = "";
  for (int t = 0; t < threads; t++) {
    pthread_join(ws[t].thread, NULL);
    for (int b = 0; b < BUCKETS; b++) {
      hist[b] += ws[t].hist[b];
      sent_hist[b] += ws[t].sent_hist[b];
    }
    done += ws[t].done;
    errors += ws[t].errors;
    closed += ws[t].closed;
    if (ws[t].max_ms > max_ms) max_ms = ws[t].max_ms;
    if (!sample[0] && ws[t].error_sample[0]) sample = ws[t].error_sample;
  }
  double v[3] = {quantile(hist, done, 0.5), quantile(hist, done, 0.99),
                 quantile(hist, done, 0.999)};
  printf("{\"connections\":%d,\"threads\":%d,\"rate\":%.0f,\"durationMs\":%lld,"
         "\"requests\":%llu,\"throughput\":%.0f,\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
         "\"sentP50\":%.3f,\"sentP99\":%.3f,"
         "\"max\":%.3f,\"errors\":%llu,\"closed\":%llu,\"errorSample\":\"",
         connections, threads, rate, (long long)duration_ms, (unsigned long long)done,
         (double)done * 1000.0 / (double)duration_ms, v[0], v[1], v[2],
         quantile(sent_hist, done, 0.5), quantile(sent_hist, done, 0.99), max_ms,
         (unsigned long long)errors, (unsigned long long)closed);
  for (const char *p = sample; *p; p++) {
    if (*p == '"' || *p == '\\') putchar('\\');
    if ((unsigned char)*p >= 0x20) putchar(*p);
  }
  printf("\"}\n");
  return 0;
}
