/*
 * echo_http: the HTTP/1.1 limit of this machine, for the seldon-server
 * benchmark. A single-threaded epoll loop that answers every request with
 * the same bytes, read once from a file (a whole HTTP response, status line,
 * headers and body: the driver saves seldon-server's own answer there, so
 * both servers write the same number of bytes).
 *
 *   bench_echo_http --response FILE [--port N] [--host ADDR]
 *
 * Prints "listening http=PORT" on stdout once it accepts connections, and
 * runs until SIGTERM or SIGINT.
 *
 * It does the least an HTTP/1.1 server must: find the end of each request's
 * head, read Content-Length, wait for that many body bytes, and queue one
 * response per request. Connections stay open (keep-alive); several requests
 * in one read (pipelining) get their responses in order, in one write. It
 * neither checks the method nor the path, and closes a connection on a
 * malformed head. It is a reference, not a server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD 16384
#define MAX_EVENTS 64

typedef struct conn {
    int fd;
    char *in; /* bytes read and not consumed yet */
    size_t in_len, in_cap;
    char *out; /* responses not written yet, from out_off */
    size_t out_len, out_off, out_cap;
    int want_out; /* EPOLLOUT is registered */
} conn;

static const char *response;
static size_t response_len;

static void die(const char *what)
{
    fprintf(stderr, "bench_echo_http: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void *grow(void *p, size_t *cap, size_t need)
{
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    if (c != *cap) {
        p = realloc(p, c);
        if (p == NULL) {
            fprintf(stderr, "bench_echo_http: out of memory\n");
            exit(1);
        }
        *cap = c;
    }
    return p;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    if (f == NULL)
        die(path);
    do {
        buf = grow(buf, &cap, n + 65536);
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

/*
 * The length of the first complete request in c->in, or 0 when more bytes
 * are needed, or -1 when the head is malformed or too large.
 */
static long complete_request(const conn *c)
{
    const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    const char *p, *line;
    size_t head;
    unsigned long body = 0;
    if (end == NULL)
        return c->in_len > MAX_HEAD ? -1 : 0;
    head = (size_t)(end - c->in) + 4;
    /* Header lines after the request line: only Content-Length matters here. */
    for (line = memchr(c->in, '\n', head); line != NULL && line + 1 < end;
         line = memchr(line + 1, '\n', (size_t)(end - line - 1) + 2)) {
        p = line + 1;
        if ((size_t)(end - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) {
            char *stop;
            p += 15;
            while (*p == ' ' || *p == '\t')
                p++;
            body = strtoul(p, &stop, 10);
            if (stop == p)
                return -1;
        } else if ((size_t)(end - p) > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0) {
            return -1; /* chunked bodies are out of scope */
        }
    }
    if (c->in_len < head + body)
        return 0;
    return (long)(head + body);
}

static void close_conn(int ep, conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Writes what it can; returns -1 when the connection is gone. */
static int flush_out(int ep, conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if ((c->out_len > 0) != c->want_out) {
        struct epoll_event ev;
        c->want_out = c->out_len > 0;
        ev.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0);
        ev.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return 0;
}

/* Reads what is there, answers every complete request; returns -1 to close. */
static int on_readable(conn *c)
{
    for (;;) {
        ssize_t n;
        c->in = grow(c->in, &c->in_cap, c->in_len + 16384);
        n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        if (n == 0)
            return -1;
        c->in_len += (size_t)n;
        if (c->in_len < c->in_cap)
            break; /* the socket is drained */
    }
    for (;;) {
        long len = complete_request(c);
        if (len < 0)
            return -1;
        if (len == 0)
            break;
        c->out = grow(c->out, &c->out_cap, c->out_len + response_len);
        memcpy(c->out + c->out_len, response, response_len);
        c->out_len += response_len;
        memmove(c->in, c->in + len, c->in_len - (size_t)len);
        c->in_len -= (size_t)len;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_echo_http --response FILE [--port N] [--host ADDR]\n");
}

int main(int argc, char **argv)
{
    const char *path = NULL, *host = "127.0.0.1";
    int port = 0, i, lfd, ep, sfd, one = 1;
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    struct epoll_event ev, events[MAX_EVENTS];
    sigset_t sigs;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--response") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL) {
        usage(stderr);
        return 2;
    }
    response = read_file(path, &response_len);
    if (response_len == 0) {
        fprintf(stderr, "bench_echo_http: %s is empty\n", path);
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    if ((sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
        die("signalfd");

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "bench_echo_http: bad IPv4 address '%s'\n", host);
        return 2;
    }
    if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("bind");
    if (listen(lfd, 1024) < 0)
        die("listen");
    if (getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0)
        die("getsockname");

    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("epoll_create1");
    ev.events = EPOLLIN;
    ev.data.ptr = NULL; /* the listener */
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.events = EPOLLIN;
    ev.data.ptr = &sfd; /* the signals */
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

    printf("listening http=%d\n", ntohs(sa.sin_port));
    fflush(stdout);

    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (i = 0; i < n; i++) {
            conn *c = events[i].data.ptr;
            if (events[i].data.ptr == &sfd)
                return 0;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    conn *nc = calloc(1, sizeof(*nc));
                    if (nc == NULL) {
                        close(fd);
                        continue;
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    nc->fd = fd;
                    ev.events = EPOLLIN;
                    ev.data.ptr = nc;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        close(fd);
                        free(nc);
                    }
                }
                continue;
            }
            if ((events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && on_readable(c) < 0) {
                close_conn(ep, c);
                continue;
            }
            if (flush_out(ep, c) < 0)
                close_conn(ep, c);
        }
    }
}
