/* wsx-echo: an echo server built on wsx's public API only (it is also the example of how to use
 * it).
 *
 * Listeners keep AcceptEx posted (initial-data accepts, with the connect-no-send reaper); every
 * accepted connection becomes a stream that sends back what it reads, through a bounded queue.
 * Each worker thread runs a completion port of its own and new connections are spread over them
 * (one port per thread, as with one io_context per thread in Asio): a connection's I/O is then
 * posted and completed on one thread. Under Wine this matters most: a socket's overlapped
 * operation is carried out by the thread that posted it (an APC), so with one port shared by all
 * workers each completion woke two threads. The main thread handles timers (idle connections,
 * periodic stats, --stop-after) and the orderly stop on Ctrl-C. */
#include "wsx/wsx.h"

#include <fcntl.h>
#include <io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTENERS 16
#define STOP_QUIET_MS 100 /* at the stop, a connection that received nothing this long is done */

static volatile LONG stop_cut; /* the stop's grace is over: what arrives now is not echoed */

typedef struct config {
    const char *listen[MAX_LISTENERS];
    int nlisten;
    int threads;
    int accepts;
    DWORD initial;
    DWORD accept_timeout;
    DWORD idle_timeout;
    DWORD send_timeout;
    long max_conns;
    DWORD buffer_size;
    size_t max_queued;
    int skip;
    int zero;
    DWORD stats_interval;
    DWORD stop_after;
    const char *trace;
    int reuse;
} config;

typedef struct totals {
    volatile LONG64 accepted, refused, bytes_in, bytes_out;
    volatile LONG64 closed[WSX_KIND_OTHER + 1];
    volatile LONG live, peak;
    volatile LONG64 peak_queued; /* most bytes any connection had waiting to be sent */
} totals;

static config cfg;
static totals tot;
static wsx_port *ports[64];         /* one per worker thread */
static volatile LONG port_live[64]; /* open connections on each */
static int nports;
static wsx_listener *listeners[MAX_LISTENERS];
static wsx_listener_stats lstats[MAX_LISTENERS]; /* taken when the listener closes */
static int nlisteners;
static HANDLE stop_event;
/* Held shared while giving a socket back to a listener, exclusive while closing the listeners. */
static SRWLOCK listeners_lock = SRWLOCK_INIT;
static int listeners_closed;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: wsx-echo [OPTIONS]\n"
        "Echo every byte back to its sender, on an I/O completion port.\n\n"
        "  --listen ADDR:PORT        listen here; up to 16 times. 127.0.0.1:7007, [::1]:7007,\n"
        "                            [::]:7007 (dual-stack); port 0 = any  [127.0.0.1:7007]\n"
        "  --threads N               worker threads, each with a completion port of its own\n"
        "                            (1-64)  [number of processors]\n"
        "  --accepts N               AcceptEx kept posted per listener (1-4096)  [16]\n"
        "  --initial-data BYTES      an accept completes with the client's first bytes, up to\n"
        "                            BYTES (<= --buffer-size; a smaller --buffer-size lowers\n"
        "                            the default); 0 = it completes on connect  [4096]\n"
        "  --accept-timeout SECONDS  close clients that connect and send nothing for this long\n"
        "                            (needs --initial-data > 0; 0-86400); 0 = never  [10]\n"
        "  --idle-timeout SECONDS    close connections with no traffic either way (and no echo\n"
        "                            waiting) for this long (0-86400); 0 = never  [0]\n"
        "  --send-timeout SECONDS    reset a connection whose echo has waited this long for\n"
        "                            the client to read (0-86400); 0 = never  [60]\n"
        "  --max-conns N             beyond N open connections, close new ones at once\n"
        "                            (0-10000000); 0 = no limit  [0]\n"
        "  --buffer-size BYTES       receive buffer (512-16777216)  [65536]\n"
        "  --max-queued BYTES        per connection: stop reading while this much waits to be\n"
        "                            sent (--buffer-size to 1073741824)  [4 x --buffer-size]\n"
        "  --skip-on-success on|off  complete I/O that succeeds at once without the port  [on]\n"
        "  --zero-byte-reads on|off  idle connections hold no receive buffer  [on]\n"
        "  --reuse on|off            accept into sockets of connections that ended in order, on\n"
        "                            one worker per listener (DisconnectEx TF_REUSE_SOCKET; Wine\n"
        "                            8.0 refuses it and new sockets are taken)  [off]\n"
        "  --trace FILE|-            write a JSON line per overlapped operation event to FILE\n"
        "                            (- = stdout); see docs/trace.md  [off]\n"
        "  --stats-interval SECONDS  print stats every SECONDS (0-86400); 0 = only at exit  [0]\n"
        "  --stop-after SECONDS      stop by itself after SECONDS (0-31536000); 0 = run\n"
        "                            until Ctrl-C  [0]\n"
        "  --help                    show this and exit\n"
        "  --version                 print the version and exit\n\n"
        "Prints 'listening on ADDR:PORT' for each listener, serves until Ctrl-C (or\n"
        "--stop-after), then finishes in-flight echoes briefly and prints its stats.\n");
}

static void die_usage(const char *what, const char *opt, const char *val)
{
    if (val)
        fprintf(stderr, "wsx-echo: %s: '%s' %s (see --help)\n", opt, val, what);
    else
        fprintf(stderr, "wsx-echo: %s %s (see --help)\n", opt, what);
    exit(2);
}

static unsigned long parse_num(const char *opt, const char *v, unsigned long lo, unsigned long hi)
{
    char *end;
    unsigned long n;

    if (v[0] < '0' || v[0] > '9')
        die_usage("is not a number", opt, v);
    n = strtoul(v, &end, 10);
    if (*end != '\0')
        die_usage("is not a number", opt, v);
    if (n < lo || n > hi)
        die_usage("is out of range", opt, v);
    return n;
}

static int parse_onoff(const char *opt, const char *v)
{
    if (strcmp(v, "on") == 0)
        return 1;
    if (strcmp(v, "off") == 0)
        return 0;
    die_usage("must be on or off", opt, v);
    return 0;
}

static const char *const options[] = {
    "--listen",         "--threads",      "--accepts",         "--initial-data",
    "--accept-timeout", "--idle-timeout", "--send-timeout",    "--max-conns",
    "--buffer-size",    "--max-queued",   "--skip-on-success", "--zero-byte-reads",
    "--stats-interval", "--stop-after",   "--trace",           "--reuse",
};

static void parse_args(int argc, char **argv)
{
    SYSTEM_INFO si;
    int have_queued = 0, have_initial = 0, have_accept_timeout = 0;

    GetSystemInfo(&si);
    cfg.threads = si.dwNumberOfProcessors > 64 ? 64 : (int)si.dwNumberOfProcessors;
    if (cfg.threads < 1)
        cfg.threads = 1;
    cfg.accepts = 16;
    cfg.initial = 4096;
    cfg.accept_timeout = 10;
    cfg.send_timeout = 60;
    cfg.buffer_size = 65536;
    cfg.skip = 1;
    cfg.zero = 1;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *val = NULL, *eq;
        char name[32];
        int known = 0;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(arg, "--version") == 0) {
            printf("wsx-echo %s\n", WSX_VERSION_STRING);
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0)
            die_usage("is not an option", "argument", arg);
        eq = strchr(arg, '=');
        if ((eq ? (size_t)(eq - arg) : strlen(arg)) >= sizeof name)
            die_usage("is not an option", "argument", arg);
        memcpy(name, arg, eq ? (size_t)(eq - arg) : strlen(arg) + 1);
        if (eq) {
            name[eq - arg] = '\0';
            val = eq + 1;
        }
        for (size_t k = 0; k < sizeof options / sizeof options[0]; k++)
            known |= strcmp(name, options[k]) == 0;
        if (strcmp(name, "--help") == 0 || strcmp(name, "--version") == 0)
            die_usage("takes no value", name, NULL);
        if (!known)
            die_usage("is not an option", "argument", name);
        if (val == NULL) {
            /* `--trace --listen ...` is a forgotten value, not a file named --listen. */
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                die_usage("needs a value", name, NULL);
            val = argv[++i];
        }
        if (strcmp(name, "--listen") == 0) {
            wsx_sockaddr probe;
            if (wsx_addr_parse(val, &probe) != 0)
                die_usage("is not ADDR:PORT (e.g. 127.0.0.1:7007 or [::1]:0)", name, val);
            if (probe.ss.ss_family == AF_INET6 &&
                IN6_IS_ADDR_V4MAPPED(&((const SOCKADDR_IN6 *)&probe.ss)->sin6_addr))
                die_usage("is an IPv4-mapped address: listen on the IPv4 address itself, or on "
                          "[::]:PORT for both families",
                          name, val);
            if (cfg.nlisten == MAX_LISTENERS)
                die_usage("is given more than 16 times", name, NULL);
            cfg.listen[cfg.nlisten++] = val;
        } else if (strcmp(name, "--threads") == 0) {
            cfg.threads = (int)parse_num(name, val, 1, 64);
        } else if (strcmp(name, "--accepts") == 0) {
            cfg.accepts = (int)parse_num(name, val, 1, 4096);
        } else if (strcmp(name, "--initial-data") == 0) {
            cfg.initial = (DWORD)parse_num(name, val, 0, 16777216);
            have_initial = 1;
        } else if (strcmp(name, "--accept-timeout") == 0) {
            cfg.accept_timeout = (DWORD)parse_num(name, val, 0, 86400);
            have_accept_timeout = 1;
        } else if (strcmp(name, "--idle-timeout") == 0) {
            cfg.idle_timeout = (DWORD)parse_num(name, val, 0, 86400);
        } else if (strcmp(name, "--send-timeout") == 0) {
            cfg.send_timeout = (DWORD)parse_num(name, val, 0, 86400);
        } else if (strcmp(name, "--max-conns") == 0) {
            cfg.max_conns = (long)parse_num(name, val, 0, 10000000);
        } else if (strcmp(name, "--buffer-size") == 0) {
            cfg.buffer_size = (DWORD)parse_num(name, val, 512, 16777216);
        } else if (strcmp(name, "--max-queued") == 0) {
            cfg.max_queued = (size_t)parse_num(name, val, 512, 1ul << 30);
            have_queued = 1;
        } else if (strcmp(name, "--skip-on-success") == 0) {
            cfg.skip = parse_onoff(name, val);
        } else if (strcmp(name, "--reuse") == 0) {
            cfg.reuse = parse_onoff(name, val);
        } else if (strcmp(name, "--zero-byte-reads") == 0) {
            cfg.zero = parse_onoff(name, val);
        } else if (strcmp(name, "--trace") == 0) {
            if (val[0] == '\0')
                die_usage("needs a file name or -", name, NULL);
            cfg.trace = val;
        } else if (strcmp(name, "--stats-interval") == 0) {
            cfg.stats_interval = (DWORD)parse_num(name, val, 0, 86400);
        } else {
            cfg.stop_after = (DWORD)parse_num(name, val, 0, 31536000);
        }
    }
    if (cfg.nlisten == 0)
        cfg.listen[cfg.nlisten++] = "127.0.0.1:7007";
    if (!have_initial && cfg.initial > cfg.buffer_size)
        cfg.initial = cfg.buffer_size; /* the default follows a smaller --buffer-size */
    if (cfg.initial > cfg.buffer_size)
        die_usage("must not exceed --buffer-size", "--initial-data", NULL);
    /* With accepts that complete on connect there is no accept to time out: say so rather than
     * ignore the option (--idle-timeout closes such clients). */
    if (have_accept_timeout && cfg.accept_timeout && cfg.initial == 0)
        die_usage("needs --initial-data > 0 (with --initial-data 0, --idle-timeout closes clients "
                  "that send nothing)",
                  "--accept-timeout", NULL);
    if (!have_queued)
        cfg.max_queued = 4 * (size_t)cfg.buffer_size;
    if (cfg.max_queued < cfg.buffer_size)
        die_usage("must be at least --buffer-size", "--max-queued", NULL);
}

/* A connection is its stream alone (its user pointer is its listener): wsx keeps the streams of a
 * port and closes the idle ones for us (wsx_port_close_streams), so a record of our own per
 * connection would only cost memory. */
static void on_data(wsx_stream *s, wsx_buf *b)
{
    InterlockedExchangeAdd64(&tot.bytes_in, b->len - b->off);
    /* Bytes that will not be echoed (the stop's grace is over, the stop half-closed the
     * connection, no send state was left) are lost: RST says so, where a FIN would pass a cut
     * echo off as a whole one. */
    if (stop_cut) {
        wsx_buf_put(b);
        wsx_stream_reset(s);
    } else if (wsx_stream_send_buf(s, b) != 0) { /* the echo: the buffer itself goes back */
        wsx_stream_reset(s);
    } else {
        wsx_stream_info info;
        wsx_stream_get_info(s, &info);
        for (LONG64 q = tot.peak_queued; (LONG64)info.peak_queued > q; q = tot.peak_queued)
            if (InterlockedCompareExchange64(&tot.peak_queued, (LONG64)info.peak_queued, q) == q)
                break;
    }
}

/* Bytes echoed are counted as they go, so that a periodic stats line shows them for the
 * connections still open. */
static void on_complete(wsx_stream *s, wsx_op_kind kind, const wsx_status *st)
{
    (void)s;
    if (kind == WSX_OP_SEND && st->wsa == 0)
        InterlockedExchangeAdd64(&tot.bytes_out, st->bytes);
}

static int port_index(const wsx_port *p)
{
    for (int i = 0; i < nports; i++)
        if (ports[i] == p)
            return i;
    return 0;
}

static void on_close(wsx_stream *s, const wsx_status *why)
{
    InterlockedDecrement(&port_live[port_index(wsx_stream_port(s))]);
    InterlockedIncrement64(&tot.closed[why->kind]);
    InterlockedDecrement(&tot.live);
}

/* --reuse on: an orderly end gives the socket back to its listener for a later accept. */
static void on_release(wsx_stream *s, SOCKET sock)
{
    AcquireSRWLockShared(&listeners_lock);
    if (!listeners_closed)
        wsx_listener_recycle(wsx_stream_user(s), sock);
    else
        closesocket(sock);
    ReleaseSRWLockShared(&listeners_lock);
}

static const wsx_stream_callbacks echo_callbacks = {on_data, NULL, on_close, on_complete, NULL};
static const wsx_stream_callbacks reuse_callbacks = {on_data, NULL, on_close, on_complete,
                                                     on_release};

static void on_accept(wsx_listener *l, const wsx_accepted *a, void *user)
{
    wsx_stream_opts o;
    wsx_stream *s;
    LONG live, peak;
    /* With --reuse, a listener's connections stay on its port: a recycled socket comes back
     * associated with the port of the stream it served, for life. */
    wsx_port *port = user;

    if (a->eof) { /* the client sent FIN before any data: nothing to echo */
        wsx_accepted_close(a, 0);
        InterlockedIncrement64(&tot.accepted);
        InterlockedIncrement64(&tot.closed[WSX_KIND_EOF]);
        return;
    }
    live = InterlockedIncrement(&tot.live);
    if (cfg.max_conns && live > cfg.max_conns) {
        /* Refused with RST, so the client cannot take it for an empty echo. */
        InterlockedDecrement(&tot.live);
        InterlockedIncrement64(&tot.refused);
        wsx_accepted_close(a, 1);
        return;
    }
    InterlockedIncrement64(&tot.accepted);
    while ((peak = tot.peak) < live && InterlockedCompareExchange(&tot.peak, live, peak) != peak)
        ;
    memset(&o, 0, sizeof o);
    o.max_queued = cfg.max_queued;
    o.zero_byte_reads = cfg.zero;
    /* A recycled socket is in skip-on-success mode for good (wsx_listener_recycle set it). */
    o.skip_on_success = cfg.skip || a->reused;
    o.associated = a->reused;
    /* The accepts are spread over every worker (not with --reuse) and this callback runs on the
     * one that accepted (a->port): the connection stays there, all its work on one thread,
     * unless that port holds 5 more than the emptiest, which takes it instead (long connections
     * share the workers evenly whatever the order the accepts complete in). */
    if (!cfg.reuse) {
        int k = port_index(a->port), least = 0;
        for (int i = 1; i < nports; i++)
            if (port_live[i] < port_live[least])
                least = i;
        if (port_live[k] > port_live[least] + 4)
            k = least;
        port = ports[k];
    }
    InterlockedIncrement(&port_live[port_index(port)]);
    /* Callbacks, on_close included, may run on other threads before this returns. */
    if (wsx_stream_open(port, a->s, &o, cfg.reuse ? &reuse_callbacks : &echo_callbacks, l, a->data,
                        a->len, &s) != 0) {
        InterlockedDecrement(&port_live[port_index(port)]);
        InterlockedDecrement(&tot.live);
        InterlockedIncrement64(&tot.closed[WSX_KIND_OTHER]);
    }
}

/* Close the connections idle for idle_ms (0: all) with `how`, on every port. */
static void close_conns(DWORD idle_ms, wsx_close_how how)
{
    for (int i = 0; i < nports; i++)
        wsx_port_close_streams(ports[i], idle_ms, how);
}

static void print_stats(const char *label)
{
    wsx_listener_stats ls;
    wsx_port_stats ps;
    LONG64 reaped = 0, failed = 0, reused = 0, reuse_failed = 0;
    LONG64 dequeued = 0, inline_done = 0, requeued = 0;
    size_t bufs_out = 0, bufs = 0;

    for (int i = 0; i < nlisteners; i++) {
        if (listeners[i])
            wsx_listener_get_stats(listeners[i], &ls);
        else
            ls = lstats[i];
        reaped += ls.reaped;
        failed += ls.failed;
        reused += ls.reused;
        reuse_failed += ls.reuse_failed;
    }
    for (int i = 0; i < nports; i++) {
        wsx_port_get_stats(ports[i], &ps);
        dequeued += ps.dequeued;
        inline_done += ps.inline_done;
        requeued += ps.requeued;
        bufs_out += wsx_buf_pool_outstanding(wsx_port_buffers(ports[i]));
        bufs += wsx_buf_pool_allocated(wsx_port_buffers(ports[i]));
    }
    printf("%s: accepted=%lld closed=%lld (ok=%lld eof=%lld peer-reset=%lld aborted-locally=%lld "
           "other=%lld) open=%ld peak=%ld bytes_in=%lld bytes_out=%lld reaped=%lld refused=%lld "
           "accept_errors=%lld reused=%lld reuse_failed=%lld peak_queued=%lld dequeued=%lld "
           "inline=%lld requeued=%lld buffers_out=%llu buffers=%llu\n",
           label, (long long)tot.accepted,
           (long long)(tot.closed[WSX_KIND_OK] + tot.closed[WSX_KIND_EOF] +
                       tot.closed[WSX_KIND_PEER_RESET] + tot.closed[WSX_KIND_ABORTED] +
                       tot.closed[WSX_KIND_REFUSED] + tot.closed[WSX_KIND_OTHER]),
           (long long)tot.closed[WSX_KIND_OK], (long long)tot.closed[WSX_KIND_EOF],
           (long long)tot.closed[WSX_KIND_PEER_RESET], (long long)tot.closed[WSX_KIND_ABORTED],
           (long long)(tot.closed[WSX_KIND_OTHER] + tot.closed[WSX_KIND_REFUSED]), (long)tot.live,
           (long)tot.peak, (long long)tot.bytes_in, (long long)tot.bytes_out, (long long)reaped,
           (long long)tot.refused, (long long)failed, (long long)reused, (long long)reuse_failed,
           (long long)tot.peak_queued, (long long)dequeued, (long long)inline_done,
           (long long)requeued, (unsigned long long)bufs_out, (unsigned long long)bufs);
    fflush(stdout);
}

static BOOL WINAPI on_console_event(DWORD event)
{
    (void)event; /* Ctrl-C, Ctrl-Break, console close; Wine turns SIGINT into Ctrl-C */
    SetEvent(stop_event);
    return TRUE;
}

static int wait_until_idle(DWORD ms)
{
    DWORD t0 = GetTickCount();
    while (tot.live > 0 && GetTickCount() - t0 < ms)
        Sleep(20);
    return tot.live == 0;
}

int main(int argc, char **argv)
{
    WSADATA wsa;
    wsx_port_opts po;
    wsx_listener_opts lo;
    DWORD last_stats, last_idle;
    ULONGLONG start; /* --stop-after is up to a year: 64-bit ticks (a DWORD wraps at 49.7 days) */
    int err;

    /* Lines end in \n alone: in text mode the CRT writes \r\n for ours while the trace's lines
     * (WriteFile) end in \n, and `--trace -` mixed the two in one stream. */
    _setmode(_fileno(stdout), _O_BINARY);
    _setmode(_fileno(stderr), _O_BINARY);
    parse_args(argc, argv);
    err = WSAStartup(MAKEWORD(2, 2), &wsa);
    if (err != 0) {
        fprintf(stderr, "wsx-echo: WSAStartup: %s\n", wsx_strerror(err));
        return 1;
    }
    stop_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (cfg.trace && (err = wsx_trace_open(cfg.trace)) != 0) {
        DWORD attr = GetFileAttributesA(cfg.trace);
        /* Windows refuses to open a directory as a file with "access denied". */
        fprintf(stderr, "wsx-echo: cannot write the trace to %s: %s\n", cfg.trace,
                attr != INVALID_FILE_ATTRIBUTES && (attr & FILE_ATTRIBUTE_DIRECTORY)
                    ? "it is a directory"
                    : wsx_strerror(err));
        return 1;
    }
    memset(&po, 0, sizeof po);
    po.buffer_size = cfg.buffer_size;
    po.send_timeout_ms = cfg.send_timeout ? cfg.send_timeout * 1000 : INFINITE;
    for (nports = 0; nports < cfg.threads && err == 0; nports++) {
        err = wsx_port_create(&ports[nports], &po);
        if (err == 0)
            err = wsx_port_start(ports[nports], 1);
    }
    if (err != 0 || nports == 0) {
        fprintf(stderr, "wsx-echo: cannot start the completion port: %s\n", wsx_strerror(err));
        return 1;
    }
    memset(&lo, 0, sizeof lo);
    lo.accepts = cfg.accepts;
    lo.initial_data = cfg.initial;
    /* A client that never sends is idle too: the idle timeout bounds its wait for an accept. */
    lo.accept_timeout_s = cfg.initial ? cfg.accept_timeout : 0;
    if (cfg.initial && cfg.idle_timeout &&
        (lo.accept_timeout_s == 0 || cfg.idle_timeout < lo.accept_timeout_s))
        lo.accept_timeout_s = cfg.idle_timeout;
    lo.reuse = cfg.reuse;
    for (int i = 0; i < cfg.nlisten; i++) {
        wsx_sockaddr addr;
        wsx_port *lp = ports[i % nports], *others[64];

        /* Every worker accepts (and serves what it accepted), the listener's port first. */
        lo.nspread = 0;
        for (int k = 1; k < nports && !cfg.reuse; k++)
            others[lo.nspread++] = ports[(i + k) % nports];
        lo.spread = others;
        wsx_addr_parse(cfg.listen[i], &addr);
        err = wsx_listener_open(lp, &addr, &lo, on_accept, lp, &listeners[i]);
        if (err != 0) {
            const char *name = wsx_error_name(err);
            fprintf(stderr, "wsx-echo: cannot listen on %s: %s (%s)\n", cfg.listen[i],
                    wsx_strerror(err), name ? name : "?");
            return 1;
        }
        nlisteners++;
    }
    /* Only once every listener is open: a supervisor takes the first line for "up". */
    for (int i = 0; i < nlisteners; i++) {
        wsx_sockaddr bound;
        char text[WSX_ADDRSTRLEN];

        wsx_listener_address(listeners[i], &bound);
        wsx_addr_format((struct sockaddr *)&bound.ss, bound.len, text, sizeof text);
        printf("listening on %s\n", text);
    }
    fflush(stdout);
    SetConsoleCtrlHandler(on_console_event, TRUE);

    start = GetTickCount64();
    last_stats = last_idle = GetTickCount();
    while (WaitForSingleObject(stop_event, 200) == WAIT_TIMEOUT) {
        DWORD now = GetTickCount();
        if (cfg.stop_after && GetTickCount64() - start >= (ULONGLONG)cfg.stop_after * 1000)
            break;
        if (cfg.stats_interval && now - last_stats >= cfg.stats_interval * 1000) {
            last_stats = now;
            print_stats("stats");
        }
        if (cfg.idle_timeout && now - last_idle >= 1000) {
            last_idle = now;
            close_conns(cfg.idle_timeout * 1000, WSX_CLOSE_GRACEFUL);
        }
    }

    /* Stop: no new clients; in-flight echoes get a short grace, then FIN, then RST (README). */
    AcquireSRWLockExclusive(&listeners_lock);
    listeners_closed = 1;
    ReleaseSRWLockExclusive(&listeners_lock);
    for (int i = 0; i < nlisteners; i++) {
        wsx_listener_get_stats(listeners[i], &lstats[i]);
        wsx_listener_close(listeners[i]);
        listeners[i] = NULL;
    }
    /* A connection quiet for STOP_QUIET_MS with its echo out gets its FIN (wsx counts one whose
     * echo waits for the client to read as busy, not quiet). One still receiving echoes on for a
     * second (a FIN now would cut off what is on its way to us); after that, the next bytes it
     * sends reset it (on_data), unless it goes quiet first. Never a FIN behind bytes we have not
     * read: the client would take the cut echo for a whole one. At 2.5 s what is left (clients
     * that neither close nor read) is reset. */
    for (DWORD t0 = GetTickCount(), t; tot.live > 0 && (t = GetTickCount() - t0) < 2500;
         Sleep(20)) {
        if (t >= 1000)
            InterlockedExchange(&stop_cut, 1);
        close_conns(STOP_QUIET_MS, WSX_CLOSE_SHUTDOWN);
    }
    if (tot.live > 0) {
        close_conns(0, WSX_CLOSE_RESET);
        wait_until_idle(3000);
    }
    for (int i = 0; i < nports; i++)
        wsx_port_stop(ports[i]); /* joins the worker */
    wsx_trace_close();           /* first: with --trace -, final: is the last line */
    print_stats("final");
    WSACleanup();
    return 0;
}
