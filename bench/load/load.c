/* load: a native load generator for echo servers (Linux, epoll, one thread).
 *
 *   load MODE --addr 127.0.0.1:PORT [options]      prints one JSON object on stdout
 *
 * Modes:
 *   pingpong  C connections; each sends a SIZE-byte message and waits for its echo before the
 *             next one. Reports messages/s and round-trip p50/p99/max.
 *   stream    C connections; each keeps up to WINDOW bytes in flight in SIZE-byte writes and reads
 *             the echo back as fast as it comes. Reports MB/s echoed.
 *   accept    C slots; each connects, echoes one SIZE-byte message, closes, and starts over.
 *             Reports connections/s.
 *   idle      Opens C connections (at most 256 being opened at once), each echoing one message
 *             so it is known to be served, holds them HOLD seconds, reads the server's resident
 *             memory (VmRSS of --server-pid, and of --aux-pid, e.g. the wineserver) before and
 *             after, then echoes one message on every connection again. Reports connections held
 *             and resident bytes per connection.
 *
 * Timed modes (pingpong, stream, accept) measure for DURATION seconds, from when WARMUP seconds
 * have passed and every connection has had an echo back (10 s more at most), then stop sending and
 * wait up to 5 s for every byte still in flight to come back. With --mark-fd FD they write
 * "measure\n" and "drain\n" to FD when the measured window opens and closes.
 *
 * Every byte that comes back is checked: connection stream bytes come from one random pattern at
 * an offset of their own, so lost, duplicated, reordered or crossed data fails the compare.
 * Any error, wrong byte, early close or a connection that got less than half the mean share of
 * the work (starvation) makes the run fail: "ok": false in the JSON and exit status 1.
 * Exit status 2: bad usage. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAT_LEN 1048573u     /* prime, so no block size of a server lines up with it */
#define IO_MAX (256u * 1024) /* largest single send or recv; the pattern repeats this much */
#define OPENING_MAX 256      /* idle: connections being opened at once */
#define MAX_ERRORS 8         /* errors kept for the report (all are counted) */

enum mode { PINGPONG, STREAM, ACCEPT, IDLE };
static const char *mode_names[] = {"pingpong", "stream", "accept", "idle"};
/* Timed modes: WARMUP -> MEASURE -> DRAIN. Idle: OPEN -> HOLD -> CHECK. */
enum phase { WARMUP, MEASURE, DRAIN, OPEN, HOLD, CHECK, FINISHED };

typedef struct conn {
    int fd, id;
    int connecting;
    uint32_t events;  /* the epoll mask registered now */
    uint64_t base;    /* where this connection's bytes start in the pattern */
    uint64_t tx, rx;  /* bytes sent; bytes received and verified */
    uint64_t msg_end; /* message modes: tx position where the current message ends */
    int64_t t_start;  /* when the current message (accept: connection) started */
    uint64_t count;   /* measured work: messages, bytes, or cycles */
    int warm;         /* has had an echo back: the server serves it */
} conn;

static struct {
    enum mode mode;
    struct sockaddr_in addr;
    int conns;
    size_t size, window;
    double duration, warmup, hold, timeout;
    int server_pid, aux_pid;
    int mark_fd; /* gets "measure\n" and "drain\n" when the measured window opens and closes */
} opt = {PINGPONG, {0}, 1, 64, 0, 5.0, 0.5, 2.0, 60.0, 0, 0, -1};

static unsigned char pat[PAT_LEN + IO_MAX];
static unsigned char rbuf[IO_MAX];
static conn *cs;
static int ep;
static enum phase phase;
static int64_t t_begin, t_measure, t_drain, t_hold_end, measured_ns;
static int64_t open_ns, check_ns; /* idle: time to open all, time to check all */
static uint64_t cycles;           /* accept: connections started, for fresh offsets */
static int nwarm;                 /* connections that have had an echo back */
static int opened, held, checked; /* idle progress */
static long rss_before, rss_after, aux_before, aux_after;
static uint32_t *rtts; /* round trips in ns, while measuring */
static size_t nrtt, rtt_cap;
static char errors[MAX_ERRORS][160];
static int nerrors;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: load pingpong|stream|accept|idle --addr IP:PORT [--conns C] [--size BYTES]\n"
            "            [--duration S] [--warmup S] [--window BYTES] [--hold S] [--timeout S]\n"
            "            [--server-pid PID] [--aux-pid PID] [--mark-fd FD]\n");
    exit(2);
}

/* Record an error; a connection it names is closed and takes no further part. */
static void fail(conn *c, const char *fmt, ...)
{
    va_list ap;
    if (nerrors < MAX_ERRORS) {
        int n = c ? snprintf(errors[nerrors], sizeof errors[0], "connection %d: ", c->id) : 0;
        va_start(ap, fmt);
        vsnprintf(errors[nerrors] + n, sizeof errors[0] - (size_t)n, fmt, ap);
        va_end(ap);
    }
    nerrors++;
    if (c && c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static long read_rss(int pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static void set_events(conn *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (c->fd >= 0 && ev != c->events && epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) != 0)
        fail(c, "epoll_ctl: %s", strerror(errno));
    c->events = ev;
}

static void conn_open(conn *c)
{
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    int one = 1;

    c->tx = c->rx = c->msg_end = 0;
    c->base = (cycles++ * 104729u + (uint64_t)c->id * 7919u) % PAT_LEN;
    c->t_start = now_ns();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fail(c, "socket: %s", strerror(errno));
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&opt.addr, sizeof opt.addr) != 0 &&
        errno != EINPROGRESS) {
        fail(c, "connect: %s", strerror(errno));
        return;
    }
    c->connecting = 1;
    c->events = EPOLLOUT;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) != 0)
        fail(c, "epoll_ctl: %s", strerror(errno));
}

/* Send pattern bytes up to the connection's target; wait for EPOLLOUT if the socket is full. */
static void pump(conn *c)
{
    uint64_t target = c->msg_end;

    if (opt.mode == STREAM)
        target = phase == DRAIN ? c->tx : c->rx + opt.window;
    while (c->fd >= 0 && c->tx < target) {
        uint64_t n = target - c->tx;
        ssize_t k;
        if (n > opt.size && opt.mode == STREAM)
            n = opt.size;
        if (n > IO_MAX)
            n = IO_MAX;
        k = send(c->fd, pat + (c->base + c->tx) % PAT_LEN, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EAGAIN)
            break;
        if (k < 0) {
            fail(c, "send: %s", strerror(errno));
            return;
        }
        c->tx += (uint64_t)k;
    }
    set_events(c, EPOLLIN | (c->tx < target ? EPOLLOUT : 0));
}

static void start_message(conn *c)
{
    c->msg_end = c->tx + opt.size;
    c->t_start = now_ns();
    pump(c);
}

static void record_rtt(int64_t ns)
{
    if (nrtt == rtt_cap) {
        rtt_cap = rtt_cap ? rtt_cap * 2 : 65536;
        if (!(rtts = realloc(rtts, rtt_cap * sizeof *rtts))) {
            fprintf(stderr, "load: out of memory\n");
            exit(1);
        }
    }
    rtts[nrtt++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

/* A message came back whole. */
static void message_done(conn *c)
{
    int64_t t = now_ns();

    switch (opt.mode) {
    case PINGPONG:
        if (phase == MEASURE) {
            c->count++;
            record_rtt(t - c->t_start);
        }
        if (phase != DRAIN)
            start_message(c);
        break;
    case ACCEPT: /* t_start is when connect() began: the whole cycle is the round trip */
        if (phase == MEASURE) {
            c->count++;
            record_rtt(t - c->t_start);
        }
        close(c->fd);
        c->fd = -1;
        if (phase != DRAIN)
            conn_open(c);
        break;
    case IDLE:
        c->count++;
        if (phase == OPEN)
            held++;
        else
            checked++;
        break;
    case STREAM:
        break;
    }
}

static void on_readable(conn *c)
{
    ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
    uint64_t off;

    if (n < 0 && errno == EAGAIN)
        return;
    if (n < 0) {
        fail(c, "recv: %s after %llu bytes", strerror(errno), (unsigned long long)c->rx);
        return;
    }
    if (n == 0) {
        fail(c, "the server closed the connection after %llu of %llu bytes",
             (unsigned long long)c->rx, (unsigned long long)c->tx);
        return;
    }
    if (c->rx + (uint64_t)n > c->tx) {
        fail(c, "got %llu bytes more than were sent",
             (unsigned long long)(c->rx + (uint64_t)n - c->tx));
        return;
    }
    off = (c->base + c->rx) % PAT_LEN;
    if (memcmp(rbuf, pat + off, (size_t)n) != 0) {
        size_t i = 0;
        while (rbuf[i] == pat[off + i])
            i++;
        fail(c, "wrong byte at stream offset %llu", (unsigned long long)(c->rx + i));
        return;
    }
    c->rx += (uint64_t)n;
    if (!c->warm) {
        c->warm = 1;
        nwarm++;
    }
    if (opt.mode == STREAM) {
        if (phase == MEASURE)
            c->count += (uint64_t)n;
        pump(c);
    } else if (c->rx == c->msg_end) {
        message_done(c);
    }
}

static void on_event(conn *c, uint32_t ev)
{
    int fd = c->fd;

    if (fd < 0)
        return;
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail(c, "connect: %s", strerror(err));
            return;
        }
        c->connecting = 0;
        if (opt.mode == STREAM)
            pump(c);
        else if (opt.mode != IDLE || phase == OPEN)
            start_message(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c);
    if ((ev & EPOLLOUT) && c->fd == fd && !c->connecting)
        pump(c);
}

/* Waiting for an echo (or a connect)? */
static int busy(const conn *c)
{
    return c->fd >= 0 && (c->connecting || c->rx < c->tx || c->rx < c->msg_end);
}

/* Tell whoever watches (bench/run.py counting wineserver requests) where the window is. */
static void mark(const char *what)
{
    if (opt.mark_fd >= 0 && write(opt.mark_fd, what, strlen(what)) < 0)
        opt.mark_fd = -1;
}

/* Move the run along its phases; 0 when it is over. */
static int advance(int64_t t)
{
    int nbusy = 0;

    if (t - t_begin > (int64_t)(opt.timeout * 1e9)) {
        for (int i = 0; i < opt.conns; i++)
            if (busy(&cs[i]))
                nbusy++;
        fail(NULL, "timed out after %.0f s with %d connections waiting", opt.timeout, nbusy);
        return 0;
    }
    if (nerrors)
        return 0;
    switch (phase) {
    case WARMUP:
        /* Measure from when every connection is served and the warm-up time is over. */
        if (t >= t_measure && nwarm == opt.conns) {
            phase = MEASURE;
            mark("measure\n");
            t_measure = t;
            t_drain = t + (int64_t)(opt.duration * 1e9);
        } else if (t - t_measure > 10000000000) {
            fail(NULL, "only %d of %d connections had an echo within %.0f s", nwarm, opt.conns,
                 opt.warmup + 10);
            return 0;
        }
        return 1;
    case MEASURE:
        if (t >= t_drain) {
            phase = DRAIN;
            mark("drain\n");
            measured_ns = t - t_measure;
        }
        return 1;
    case DRAIN:
        for (int i = 0; i < opt.conns; i++)
            if (busy(&cs[i]))
                nbusy++;
        if (nbusy && t - t_drain > 5000000000) {
            for (int i = 0; i < opt.conns; i++)
                if (busy(&cs[i]))
                    fail(&cs[i], "%llu bytes sent never came back",
                         (unsigned long long)(cs[i].tx - cs[i].rx));
            return 0;
        }
        return nbusy > 0;
    case OPEN:
        while (opened < opt.conns && opened - held < OPENING_MAX)
            conn_open(&cs[opened++]);
        if (held < opt.conns)
            return 1;
        t_hold_end = t + (int64_t)(opt.hold * 1e9);
        open_ns = t - t_begin;
        phase = HOLD;
        return 1;
    case HOLD:
        if (t < t_hold_end)
            return 1;
        rss_after = read_rss(opt.server_pid);
        aux_after = read_rss(opt.aux_pid);
        phase = CHECK;
        for (int i = 0; i < opt.conns; i++)
            start_message(&cs[i]);
        return 1;
    case CHECK:
        if (checked < opt.conns)
            return 1;
        check_ns = t - t_hold_end;
        return 0;
    case FINISHED:
        break;
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(double p)
{
    size_t i = (size_t)(p * (double)nrtt + 0.999999);
    if (nrtt == 0)
        return 0;
    return rtts[i == 0 ? 0 : i - 1] / 1e3;
}

static void report(void)
{
    double secs = measured_ns / 1e9, mean = 0, sum = 0;
    uint64_t lo = UINT64_MAX, hi = 0;

    for (int i = 0; i < opt.conns; i++) {
        sum += (double)cs[i].count;
        lo = cs[i].count < lo ? cs[i].count : lo;
        hi = cs[i].count > hi ? cs[i].count : hi;
    }
    mean = sum / opt.conns;
    /* Starvation: a connection with less than half the mean share of the work. */
    if (!nerrors && opt.mode != IDLE && opt.conns > 1 && (double)lo < mean / 2) {
        int starved = 0, worst = 0;
        for (int i = 0; i < opt.conns; i++)
            if ((double)cs[i].count < mean / 2) {
                starved++;
                worst = cs[i].count < cs[worst].count ? i : worst;
            }
        fail(NULL,
             "starvation: %d of %d connections got under half the mean share %.0f "
             "(connection %d: %llu)",
             starved, opt.conns, mean, worst, (unsigned long long)cs[worst].count);
    }

    printf("{\"mode\": \"%s\", \"conns\": %d, \"size\": %zu, \"ok\": %s, \"error_count\": %d, "
           "\"errors\": [",
           mode_names[opt.mode], opt.conns, opt.size, nerrors ? "false" : "true", nerrors);
    for (int i = 0; i < nerrors && i < MAX_ERRORS; i++)
        printf("%s\"%s\"", i ? ", " : "", errors[i]); /* messages hold no quotes */
    printf("], \"share\": {\"min\": %llu, \"mean\": %.1f, \"max\": %llu}", (unsigned long long)lo,
           mean, (unsigned long long)hi);
    if (opt.mode == IDLE) {
        double per = held > 0 && rss_before >= 0 && rss_after >= 0
                         ? (double)(rss_after - rss_before) / held
                         : -1;
        double aux = held > 0 && aux_before >= 0 && aux_after >= 0
                         ? (double)(aux_after - aux_before) / held
                         : -1;
        printf(", \"held\": %d, \"checked\": %d, \"rss_before\": %ld, \"rss_after\": %ld, "
               "\"rss_per_conn\": %.0f, \"aux_before\": %ld, \"aux_after\": %ld, "
               "\"aux_per_conn\": %.0f, \"open_s\": %.2f, \"check_s\": %.2f",
               held, checked, rss_before, rss_after, per, aux_before, aux_after, aux, open_ns / 1e9,
               check_ns / 1e9);
    } else {
        qsort(rtts, nrtt, sizeof *rtts, cmp_u32);
        printf(", \"seconds\": %.3f, \"total\": %.0f, \"per_s\": %.1f, \"mb_per_s\": %.2f, "
               "\"rtt_us\": {\"n\": %zu, \"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f}",
               secs, sum, secs > 0 ? sum / secs : 0,
               opt.mode == STREAM && secs > 0 ? sum / secs / 1e6 : 0, nrtt, pct_us(0.50),
               pct_us(0.99), nrtt ? rtts[nrtt - 1] / 1e3 : 0);
    }
    printf("}\n");
}

static double num(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || v < 0)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    struct epoll_event evs[256];
    struct rlimit rl;
    uint64_t x = 0x9E3779B97F4A7C15u;
    int i;

    if (argc < 2)
        usage();
    for (i = 0; i < 4 && strcmp(argv[1], mode_names[i]) != 0; i++)
        ;
    if (i == 4)
        usage();
    opt.mode = (enum mode)i;
    for (i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--addr") == 0) {
            char host[64];
            const char *colon = strrchr(v, ':');
            if (!colon || (size_t)(colon - v) >= sizeof host)
                usage();
            memcpy(host, v, (size_t)(colon - v));
            host[colon - v] = '\0';
            opt.addr.sin_family = AF_INET;
            opt.addr.sin_port = htons((uint16_t)num(colon + 1));
            if (inet_pton(AF_INET, host, &opt.addr.sin_addr) != 1)
                usage();
        } else if (strcmp(k, "--conns") == 0)
            opt.conns = (int)num(v);
        else if (strcmp(k, "--size") == 0)
            opt.size = (size_t)num(v);
        else if (strcmp(k, "--window") == 0)
            opt.window = (size_t)num(v);
        else if (strcmp(k, "--duration") == 0)
            opt.duration = num(v);
        else if (strcmp(k, "--warmup") == 0)
            opt.warmup = num(v);
        else if (strcmp(k, "--hold") == 0)
            opt.hold = num(v);
        else if (strcmp(k, "--timeout") == 0)
            opt.timeout = num(v);
        else if (strcmp(k, "--server-pid") == 0)
            opt.server_pid = (int)num(v);
        else if (strcmp(k, "--aux-pid") == 0)
            opt.aux_pid = (int)num(v);
        else if (strcmp(k, "--mark-fd") == 0)
            opt.mark_fd = (int)num(v);
        else
            usage();
    }
    if (i != argc || opt.addr.sin_family != AF_INET || opt.conns < 1 || opt.size < 1)
        usage();
    if (opt.window == 0)
        opt.window = 4 * opt.size;
    if (opt.mode != IDLE && opt.timeout < opt.warmup + opt.duration + 20)
        opt.timeout = opt.warmup + opt.duration + 20;

    /* Idle holds thousands of sockets: take the whole fd allowance. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (size_t k = 0; k < PAT_LEN; k++) { /* xorshift64: bytes with no short period */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        pat[k] = (unsigned char)(x >> 24);
    }
    memcpy(pat + PAT_LEN, pat, IO_MAX);
    if (!(cs = calloc((size_t)opt.conns, sizeof *cs)) || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        perror("load");
        return 1;
    }
    for (i = 0; i < opt.conns; i++) {
        cs[i].id = i;
        cs[i].fd = -1;
    }

    t_begin = now_ns();
    if (opt.mode == IDLE) {
        rss_before = read_rss(opt.server_pid);
        aux_before = read_rss(opt.aux_pid);
        phase = OPEN;
    } else {
        t_measure = t_begin + (int64_t)(opt.warmup * 1e9);
        t_drain = t_measure + (int64_t)(opt.duration * 1e9);
        phase = WARMUP;
        for (i = 0; i < opt.conns; i++)
            conn_open(&cs[i]);
    }
    while (advance(now_ns())) {
        int n = epoll_wait(ep, evs, 256, 10);
        if (n < 0 && errno != EINTR) {
            fail(NULL, "epoll_wait: %s", strerror(errno));
            break;
        }
        for (i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }
    phase = FINISHED;
    report();
    for (i = 0; i < opt.conns; i++)
        if (cs[i].fd >= 0)
            close(cs[i].fd);
    return nerrors ? 1 : 0;
}
