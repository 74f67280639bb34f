/*
 * The machine's floor for the bench: a line-echo server in C, one thread, epoll. Built by
 * bench/native.ts with `cc` at bench time (never committed as a binary).
 *
 *   echo [--port 0]
 *
 * Prints `READY <port>` once listening on 127.0.0.1. Each read's complete lines go back in one
 * write; an unterminated tail waits for its LF. Whatever a server costs above this is its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

typedef struct {
  int fd;
  size_t len; /* bytes of an unterminated line kept in buf */
  char buf[BUF];
} client_t;

/* Writes all of p; a reply is small, so waiting for room on this one socket is fine. */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        poll(&pf, 1, 1000);
        continue;
      }
      return -1;
    }
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else {
      fprintf(stderr, "echo: unknown flag %s (usage: echo [--port P])\n", argv[i]);
      return 2;
    }
  }
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
    fprintf(stderr, "echo: cannot listen on port %d: %s\n", port, strerror(errno));
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(ls, (struct sockaddr *)&a, &al);
  printf("READY %d\n", ntohs(a.sin_port));
  fflush(stdout);
  int ep = epoll_create1(0);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno != EINTR) return 1;
    for (int e = 0; e < n; e++) {
      client_t *c = evs[e].data.ptr;
      if (c == NULL) {
        int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c = calloc(1, sizeof *c);
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        continue;
      }
      ssize_t k = read(c->fd, c->buf + c->len, BUF - c->len);
      if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (k <= 0 || (c->len + (size_t)k == BUF && !memchr(c->buf, '\n', BUF))) {
        /* Closed, failed, or a line longer than the buffer: drop the client. */
        close(c->fd);
        free(c);
        continue;
      }
      size_t have = c->len + (size_t)k;
      char *last = memrchr(c->buf, '\n', have);
      if (last == NULL) {
        c->len = have;
        continue;
      }
      size_t full = (size_t)(last - c->buf) + 1;
      if (write_all(c->fd, c->buf, full) < 0) {
        close(c->fd);
        free(c);
        continue;
      }
      c->len = have - full;
      memmove(c->buf, c->buf + full, c->len);
    }
  }
}
