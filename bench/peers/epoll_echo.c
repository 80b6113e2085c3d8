/* epoll-echo: the native Linux echo server that marks the limit of the machine (no Wine).
 *
 *   epoll-echo [--listen IP:PORT] [--threads N] [--buffer-size BYTES]
 *
 * The usual shape: N threads, each with its own epoll set; the listening socket is in every
 * set with EPOLLEXCLUSIVE, so one thread wakes per burst of connections, and it hands what it
 * accepts to the threads in turn (so each thread serves its share of the connections). Reads go
 * into the thread's buffer and are written straight back; only what the socket does not take is
 * copied aside, and the connection stops reading until that is sent. Prints "listening on IP:PORT";
 * SIGINT ends it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
    int fd;
    char *pending; /* bytes read but not yet sent, owned while the socket is full */
    size_t len, off;
} conn;

static int lfd;
static int nthreads = 1;
static int eps[256];            /* each thread's epoll set */
static atomic_uint next_thread; /* round robin for new connections */
static size_t buffer_size = 65536;
static conn listener_tag; /* data.ptr of the listening socket in every epoll set */

static void on_sigint(int sig)
{
    (void)sig;
    _exit(0);
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void conn_close(conn *c)
{
    close(c->fd); /* also leaves the epoll set */
    free(c->pending);
    free(c);
}

/* Send buf[0..n); keep what the socket refuses. 0 = fine, -1 = the connection is gone. */
static int send_or_keep(int ep, conn *c, const char *buf, size_t n)
{
    size_t off = 0;

    while (off < n) {
        ssize_t k = send(c->fd, buf + off, n - off, MSG_NOSIGNAL);
        if (k < 0 && errno == EAGAIN)
            break;
        if (k < 0)
            return -1;
        off += (size_t)k;
    }
    if (off < n) {
        struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
        if (c->pending == NULL && (c->pending = malloc(buffer_size)) == NULL)
            return -1;
        memmove(c->pending, buf + off, n - off);
        c->len = n - off;
        c->off = 0;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e); /* write only until it is flushed */
    }
    return 0;
}

static void on_writable(int ep, conn *c)
{
    while (c->off < c->len) {
        ssize_t k = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (k < 0 && errno == EAGAIN)
            return;
        if (k < 0) {
            conn_close(c);
            return;
        }
        c->off += (size_t)k;
    }
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    c->len = c->off = 0;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void on_readable(int ep, conn *c, char *buf)
{
    ssize_t n = recv(c->fd, buf, buffer_size, 0);

    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0 || send_or_keep(ep, c, buf, (size_t)n) != 0)
        conn_close(c); /* EOF, reset, or out of memory */
}

static void on_accept(void)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        conn *c;
        if (fd < 0)
            return; /* EAGAIN: another thread took it, or the queue is empty */
        if ((c = calloc(1, sizeof *c)) == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        int ep = eps[atomic_fetch_add(&next_thread, 1) % (unsigned)nthreads];
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0)
            conn_close(c);
    }
}

static void *worker(void *arg)
{
    struct epoll_event evs[64];
    char *buf = malloc(buffer_size);
    int ep = *(int *)arg;

    if (buf == NULL)
        die("epoll-echo: worker");
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c == &listener_tag)
                on_accept();
            else if (c->len > 0)
                on_writable(ep, c);
            else
                on_readable(ep, c, buf);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:7007";
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    char host[64];
    const char *colon;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: epoll-echo [--listen IP:PORT] [--threads N] [--buffer-size BYTES]\n");
            return 0;
        }
        if (i + 1 >= argc)
            goto usage;
        if (strcmp(argv[i], "--listen") == 0)
            listen_at = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0)
            nthreads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--buffer-size") == 0)
            buffer_size = (size_t)atol(argv[++i]);
        else
            goto usage;
    }
    colon = strrchr(listen_at, ':');
    if (nthreads < 1 || nthreads > 256 || buffer_size < 512 || !colon ||
        (size_t)(colon - listen_at) >= sizeof host)
        goto usage;
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = '\0';
    sa.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        goto usage;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sigint); /* also when started with SIGINT ignored (a shell's `cmd &`) */
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("epoll-echo: socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, SOMAXCONN) != 0)
        die("epoll-echo: listen");
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    printf("listening on %s:%u\n", host, ntohs(sa.sin_port));
    fflush(stdout);
    for (int i = 0; i < nthreads; i++) {
        struct epoll_event le = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &listener_tag};
        if ((eps[i] = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
            epoll_ctl(eps[i], EPOLL_CTL_ADD, lfd, &le) != 0)
            die("epoll-echo: epoll");
    }
    for (int i = 1; i < nthreads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, &eps[i]) != 0)
            die("epoll-echo: pthread_create");
    }
    worker(&eps[0]);
    return 0;
usage:
    fprintf(stderr, "epoll-echo: bad usage (see --help)\n");
    return 2;
}
