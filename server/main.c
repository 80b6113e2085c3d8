/* wsx-echo: an echo server on an I/O completion port, built on wsx's public API only.
 *
 * One thread. Each listener keeps N AcceptEx posted; an accept with initial data completes when
 * the client's first bytes arrive and hands them over with the connection. A connection has at
 * most one operation in flight (recv, then the send of what it read, then the next recv), so an
 * echo never reorders and a slow reader stops the server reading from that client. */
#include "wsx/wsx.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTENERS 16
#define BATCH 64

enum op_kind { OP_ACCEPT, OP_RECV, OP_SEND };

/* OVERLAPPED first: CONTAINING_RECORD turns what the port returns back into the op. */
typedef struct op {
    OVERLAPPED ov;
    enum op_kind kind;
    int pending; /* 1 from a successful post until its completion is dequeued */
} op;

typedef struct listener listener;

typedef struct acceptor {
    op op;
    listener *l;
    SOCKET s;
    char *buf; /* initial data, then two WSX_ACCEPT_ADDR_LEN address areas */
} acceptor;

struct listener {
    SOCKET s;
    int af;
    const wsx_ext *ext;
    acceptor *acceptors;
    char name[WSX_ADDRSTRLEN];
};

typedef struct conn {
    op op;
    SOCKET s;
    struct conn *prev, *next;
    int closing;
    DWORD len, off; /* bytes buf[off..len) are still to be sent */
    char *buf;
} conn;

typedef struct config {
    const char *listen[MAX_LISTENERS];
    int nlisten;
    int accepts;
    DWORD initial;
    DWORD buffer_size;
} config;

typedef struct stats {
    unsigned long long accepted, closed, bytes_in, bytes_out, accept_errors, conn_errors;
} stats;

static config cfg = {{NULL}, 0, 16, 4096, 65536};
static stats st;
static HANDLE port;
static listener listeners[MAX_LISTENERS];
static int nlisteners;
static conn *conns;
static int stopping;
static int idle_acceptors; /* acceptors that could not post; retried once a second */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wsx-echo [OPTIONS]\n"
            "Echo every byte back to its sender, on an I/O completion port.\n\n"
            "  --listen ADDR:PORT     listen here (repeatable; 127.0.0.1:7007, [::1]:7007,\n"
            "                         [::]:7007 for dual-stack; port 0 = any)  [127.0.0.1:7007]\n"
            "  --accepts N            AcceptEx kept posted per listener (1-1024)  [16]\n"
            "  --initial-data BYTES   accept completes with the first BYTES the client sends;\n"
            "                         0 = accept completes on connect  [4096]\n"
            "  --buffer-size BYTES    receive buffer per connection (512-16777216)  [65536]\n"
            "  --help                 show this and exit\n"
            "  --version              print the version and exit\n\n"
            "Prints 'listening on ADDR:PORT' for each listener, then serves until Ctrl-C.\n");
}

static void die_usage(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "wsx-echo: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see --help)\n");
    exit(2);
}

static unsigned long parse_num(const char *opt, const char *v, unsigned long lo, unsigned long hi)
{
    char *end;
    unsigned long n;

    if (v[0] < '0' || v[0] > '9')
        die_usage("%s: '%s' is not a number", opt, v);
    n = strtoul(v, &end, 10);
    if (*end != '\0')
        die_usage("%s: '%s' is not a number", opt, v);
    if (n < lo || n > hi)
        die_usage("%s: '%s' is out of range", opt, v);
    return n;
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *val = NULL, *eq;
        char name[32];

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(arg, "--version") == 0) {
            printf("wsx-echo %s\n", WSX_VERSION_STRING);
            exit(0);
        }
        if (strncmp(arg, "--", 2) != 0)
            die_usage("unexpected argument '%s'%s", arg, "");
        eq = strchr(arg, '=');
        if (eq) {
            size_t n = (size_t)(eq - arg);
            if (n >= sizeof name)
                die_usage("unknown option '%s'%s", arg, "");
            memcpy(name, arg, n);
            name[n] = '\0';
            val = eq + 1;
        } else {
            if (strlen(arg) >= sizeof name)
                die_usage("unknown option '%s'%s", arg, "");
            strcpy(name, arg);
        }
        if (strcmp(name, "--listen") != 0 && strcmp(name, "--accepts") != 0 &&
            strcmp(name, "--initial-data") != 0 && strcmp(name, "--buffer-size") != 0)
            die_usage("unknown option '%s'%s", name, "");
        if (val == NULL) {
            if (i + 1 >= argc)
                die_usage("%s needs a value%s", name, "");
            val = argv[++i];
        }
        if (strcmp(name, "--listen") == 0) {
            wsx_sockaddr probe;
            if (wsx_addr_parse(val, &probe) != 0)
                die_usage("--listen: '%s' is not ADDR:PORT (e.g. 127.0.0.1:7007 or [::1]:0)%s", val,
                          "");
            if (cfg.nlisten == MAX_LISTENERS)
                die_usage("--listen: at most 16 addresses%s%s", "", "");
            cfg.listen[cfg.nlisten++] = val;
        } else if (strcmp(name, "--accepts") == 0) {
            cfg.accepts = (int)parse_num(name, val, 1, 1024);
        } else if (strcmp(name, "--initial-data") == 0) {
            cfg.initial = (DWORD)parse_num(name, val, 0, 16777216);
        } else {
            cfg.buffer_size = (DWORD)parse_num(name, val, 512, 16777216);
        }
    }
    if (cfg.nlisten == 0)
        cfg.listen[cfg.nlisten++] = "127.0.0.1:7007";
    if (cfg.initial > cfg.buffer_size)
        die_usage("--initial-data must not exceed --buffer-size%s%s", "", "");
}

static void log_error(const char *what, int err)
{
    const char *name = wsx_error_name(err);
    fprintf(stderr, "wsx-echo: %s: %s (%d %s)\n", what, wsx_strerror(err), err, name ? name : "");
}

static void conn_free(conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->buf);
    free(c);
    st.closed++;
}

/* Close now if nothing is in flight; otherwise cancel, close, and free when the completion
 * comes back (an OVERLAPPED is the kernel's until then). */
static void conn_close(conn *c, int graceful)
{
    if (c->s != INVALID_SOCKET) {
        if (graceful)
            shutdown(c->s, SD_SEND);
        if (c->op.pending)
            CancelIoEx((HANDLE)c->s, NULL);
        closesocket(c->s);
        c->s = INVALID_SOCKET;
    }
    c->closing = 1;
    if (!c->op.pending)
        conn_free(c);
}

/* Every post below: a call that returns success or WSA_IO_PENDING queues a completion packet
 * (skip-on-success is not enabled), so the op is pending either way. */
static void conn_recv(conn *c)
{
    WSABUF wb;
    DWORD flags = 0;

    wb.buf = c->buf;
    wb.len = cfg.buffer_size;
    memset(&c->op.ov, 0, sizeof c->op.ov);
    c->op.kind = OP_RECV;
    if (WSARecv(c->s, &wb, 1, NULL, &flags, &c->op.ov, NULL) != 0 &&
        WSAGetLastError() != WSA_IO_PENDING) {
        st.conn_errors++;
        conn_close(c, 0);
        return;
    }
    c->op.pending = 1;
}

static void conn_send(conn *c)
{
    WSABUF wb;

    wb.buf = c->buf + c->off;
    wb.len = c->len - c->off;
    memset(&c->op.ov, 0, sizeof c->op.ov);
    c->op.kind = OP_SEND;
    if (WSASend(c->s, &wb, 1, NULL, 0, &c->op.ov, NULL) != 0 &&
        WSAGetLastError() != WSA_IO_PENDING) {
        st.conn_errors++;
        conn_close(c, 0);
        return;
    }
    c->op.pending = 1;
}

static void on_conn(conn *c, wsx_status r)
{
    c->op.pending = 0;
    if (c->closing) {
        conn_free(c);
        return;
    }
    if (r.kind == WSX_KIND_EOF) {
        /* Every byte read has been echoed (one op at a time), so FIN can follow at once. */
        conn_close(c, 1);
        return;
    }
    if (r.wsa != 0) {
        if (r.kind != WSX_KIND_PEER_RESET)
            st.conn_errors++;
        conn_close(c, 0);
        return;
    }
    if (c->op.kind == OP_RECV) {
        st.bytes_in += r.bytes;
        c->len = r.bytes;
        c->off = 0;
        conn_send(c);
        return;
    }
    st.bytes_out += r.bytes;
    c->off += r.bytes;
    if (c->off < c->len)
        conn_send(c); /* partial send: post the rest, in order */
    else
        conn_recv(c);
}

static void conn_start(SOCKET s, const char *initial, DWORD n)
{
    conn *c = calloc(1, sizeof *c);
    char *buf = malloc(cfg.buffer_size);

    if (c == NULL || buf == NULL || CreateIoCompletionPort((HANDLE)s, port, 0, 0) == NULL) {
        free(c);
        free(buf);
        closesocket(s);
        st.conn_errors++;
        return;
    }
    c->s = s;
    c->buf = buf;
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    if (n > 0) {
        memcpy(c->buf, initial, n);
        c->len = n;
        c->off = 0;
        st.bytes_in += n;
        conn_send(c);
    } else {
        conn_recv(c);
    }
}

/* Post one AcceptEx. A connection reset while in the backlog can fail AcceptEx at once with
 * WSAECONNRESET: that client is gone, the listener is not, so try again with a new socket. */
static void post_accept(acceptor *a)
{
    listener *l = a->l;

    for (int tries = 0; tries < 64; tries++) {
        DWORD got = 0;
        int err;

        a->s = WSASocketW(l->af, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
        if (a->s == INVALID_SOCKET)
            break;
        wsx_accept_addrs_clear(a->buf, cfg.initial);
        memset(&a->op.ov, 0, sizeof a->op.ov);
        a->op.kind = OP_ACCEPT;
        if (l->ext->AcceptEx(l->s, a->s, a->buf, cfg.initial, WSX_ACCEPT_ADDR_LEN,
                             WSX_ACCEPT_ADDR_LEN, &got, &a->op.ov) ||
            WSAGetLastError() == WSA_IO_PENDING) {
            a->op.pending = 1;
            return;
        }
        err = WSAGetLastError();
        closesocket(a->s);
        a->s = INVALID_SOCKET;
        st.accept_errors++;
        if (err != WSAECONNRESET)
            break;
    }
    /* Out of sockets or memory: leave this acceptor idle; the loop retries it every second. */
    idle_acceptors++;
}

static void on_accept(acceptor *a, wsx_status r)
{
    SOCKET s = a->s;

    a->op.pending = 0;
    a->s = INVALID_SOCKET;
    if (stopping) {
        closesocket(s);
        return;
    }
    if (r.wsa != 0) {
        /* The client reset or vanished before its accept completed: drop it, keep listening. */
        st.accept_errors++;
        closesocket(s);
        post_accept(a);
        return;
    }
    st.accepted++;
    /* Required before getpeername, shutdown or any other call on an AcceptEx socket. */
    if (setsockopt(s, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (char *)&a->l->s, sizeof a->l->s) !=
        0) {
        st.conn_errors++;
        closesocket(s);
        st.closed++;
    } else if (cfg.initial > 0 && r.bytes == 0) {
        /* Initial-data accept that completed empty: the client sent FIN before any data. */
        shutdown(s, SD_SEND);
        closesocket(s);
        st.closed++;
    } else {
        conn_start(s, a->buf, r.bytes);
    }
    post_accept(a);
}

static int open_listener(listener *l, const char *text)
{
    wsx_sockaddr addr;
    int err;
    const char *missing = NULL;

    wsx_addr_parse(text, &addr);
    l->af = addr.ss.ss_family;
    l->s = WSASocketW(l->af, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (l->s == INVALID_SOCKET) {
        err = WSAGetLastError();
        fprintf(stderr, "wsx-echo: %s: cannot create socket: %s\n", text, wsx_strerror(err));
        return err;
    }
    if (l->af == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&((SOCKADDR_IN6 *)&addr.ss)->sin6_addr)) {
        DWORD off = 0; /* [::] serves IPv4 clients too, as ::ffff:a.b.c.d */
        setsockopt(l->s, IPPROTO_IPV6, IPV6_V6ONLY, (char *)&off, sizeof off);
    }
    if (bind(l->s, (struct sockaddr *)&addr.ss, addr.len) != 0 || listen(l->s, SOMAXCONN) != 0) {
        err = WSAGetLastError();
        fprintf(stderr, "wsx-echo: %s: cannot listen: %s (%s)\n", text, wsx_strerror(err),
                wsx_error_name(err) ? wsx_error_name(err) : "?");
        return err;
    }
    addr.len = (int)sizeof addr.ss;
    getsockname(l->s, (struct sockaddr *)&addr.ss, &addr.len);
    wsx_addr_format((struct sockaddr *)&addr.ss, addr.len, l->name, sizeof l->name);

    err = wsx_ext_get(l->s, &l->ext);
    if (err == 0)
        err = wsx_ext_require(
            l->ext, WSX_EXT_BIT(WSX_EXT_ACCEPTEX) | WSX_EXT_BIT(WSX_EXT_GETACCEPTEXSOCKADDRS),
            &missing);
    if (err != 0) {
        fprintf(stderr, "wsx-echo: %s: the socket provider lacks %s: %s\n", text,
                missing ? missing : "its extension functions", wsx_strerror(err));
        return err;
    }
    if (CreateIoCompletionPort((HANDLE)l->s, port, 0, 0) == NULL) {
        fprintf(stderr, "wsx-echo: %s: cannot associate with the port (%lu)\n", text,
                GetLastError());
        return WSAEINVAL;
    }
    l->acceptors = calloc((size_t)cfg.accepts, sizeof *l->acceptors);
    if (l->acceptors == NULL)
        return WSAENOBUFS;
    for (int i = 0; i < cfg.accepts; i++) {
        acceptor *a = &l->acceptors[i];
        a->l = l;
        a->s = INVALID_SOCKET;
        a->buf = malloc(WSX_ACCEPT_BUF_LEN(cfg.initial));
        if (a->buf == NULL)
            return WSAENOBUFS;
    }
    return 0;
}

static void retry_idle_acceptors(void)
{
    int n = idle_acceptors;

    idle_acceptors = 0;
    for (int i = 0; i < nlisteners && n > 0; i++)
        for (int j = 0; j < cfg.accepts; j++)
            if (!listeners[i].acceptors[j].op.pending) {
                post_accept(&listeners[i].acceptors[j]);
                n--;
            }
}

static void dispatch(OVERLAPPED *ov, DWORD bytes)
{
    op *o = CONTAINING_RECORD(ov, op, ov);
    wsx_status r = wsx_status_from_overlapped(ov, bytes, o->kind == OP_RECV);

    if (o->kind == OP_ACCEPT)
        on_accept(CONTAINING_RECORD(o, acceptor, op), r);
    else
        on_conn(CONTAINING_RECORD(o, conn, op), r);
}

static BOOL WINAPI on_console_event(DWORD event)
{
    (void)event;
    /* Wake the loop with a packet that carries no OVERLAPPED. */
    PostQueuedCompletionStatus(port, 0, 0, NULL);
    return TRUE;
}

static int pending_ops(void)
{
    int n = 0;

    for (int i = 0; i < nlisteners; i++)
        for (int j = 0; j < cfg.accepts; j++)
            n += listeners[i].acceptors[j].op.pending;
    for (conn *c = conns; c; c = c->next)
        n += c->op.pending;
    return n;
}

/* Stop: cancel and close everything, then wait for every pending OVERLAPPED to come back
 * before the memory that holds it is released. */
static void shutdown_all(void)
{
    DWORD deadline = GetTickCount() + 5000;

    stopping = 1;
    for (int i = 0; i < nlisteners; i++) {
        CancelIoEx((HANDLE)listeners[i].s, NULL);
        for (int j = 0; j < cfg.accepts; j++)
            if (listeners[i].acceptors[j].s != INVALID_SOCKET)
                CancelIoEx((HANDLE)listeners[i].acceptors[j].s, NULL);
        closesocket(listeners[i].s);
    }
    for (conn *c = conns, *next; c; c = next) {
        next = c->next;
        conn_close(c, 0);
    }
    while (pending_ops() > 0 && (LONG)(deadline - GetTickCount()) > 0) {
        OVERLAPPED_ENTRY e[BATCH];
        ULONG n = 0;
        if (!GetQueuedCompletionStatusEx(port, e, BATCH, &n, 200, FALSE))
            continue;
        for (ULONG i = 0; i < n; i++)
            if (e[i].lpOverlapped)
                dispatch(e[i].lpOverlapped, e[i].dwNumberOfBytesTransferred);
    }
}

int main(int argc, char **argv)
{
    WSADATA wsa;
    int err;

    parse_args(argc, argv);
    err = WSAStartup(MAKEWORD(2, 2), &wsa);
    if (err != 0) {
        log_error("WSAStartup", err);
        return 1;
    }
    port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (port == NULL) {
        fprintf(stderr, "wsx-echo: cannot create a completion port (%lu)\n", GetLastError());
        return 1;
    }
    for (int i = 0; i < cfg.nlisten; i++) {
        if (open_listener(&listeners[i], cfg.listen[i]) != 0)
            return 1;
        nlisteners++;
    }
    SetConsoleCtrlHandler(on_console_event, TRUE);
    for (int i = 0; i < nlisteners; i++) {
        for (int j = 0; j < cfg.accepts; j++)
            post_accept(&listeners[i].acceptors[j]);
        printf("listening on %s\n", listeners[i].name);
    }
    fflush(stdout);

    for (;;) {
        OVERLAPPED_ENTRY e[BATCH];
        ULONG n = 0;
        int stop = 0;

        if (!GetQueuedCompletionStatusEx(port, e, BATCH, &n, idle_acceptors ? 1000 : INFINITE,
                                         FALSE)) {
            err = (int)GetLastError();
            if (err != WAIT_TIMEOUT) {
                fprintf(stderr, "wsx-echo: GetQueuedCompletionStatusEx failed (%d)\n", err);
                Sleep(10);
            }
        }
        for (ULONG i = 0; i < n; i++) {
            if (e[i].lpOverlapped == NULL)
                stop = 1;
            else
                dispatch(e[i].lpOverlapped, e[i].dwNumberOfBytesTransferred);
        }
        if (stop)
            break;
        if (idle_acceptors)
            retry_idle_acceptors();
    }

    shutdown_all();
    printf("stats: accepted=%llu closed=%llu bytes_in=%llu bytes_out=%llu accept_errors=%llu "
           "conn_errors=%llu\n",
           st.accepted, st.closed, st.bytes_in, st.bytes_out, st.accept_errors, st.conn_errors);
    fflush(stdout);
    WSACleanup();
    return 0;
}
