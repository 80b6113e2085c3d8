#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wsx__connect {
    wsx_op op;
    SOCKET s;
    wsx_connect_fn fn;
    void *user;
    char *data; /* must live until the completion: the kernel reads it */
    wsx_sockaddr to;
    unsigned long long id;            /* the connection's id in the trace (0: not traced) */
    DWORD started;                    /* GetTickCount at the post (connect timeout) */
    int timed_out;                    /* the sweep cancelled it (under the port's connects_lock) */
    struct wsx__connect *prev, *next; /* the port's connects in flight */
} connect_op;

static void unlink_connect(wsx_port *port, connect_op *c)
{
    AcquireSRWLockExclusive(&port->connects_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        port->connects = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ReleaseSRWLockExclusive(&port->connects_lock);
}

static void on_connect(wsx_op *op, const wsx_status *st)
{
    connect_op *c = op->owner;
    SOCKET s = c->s;
    wsx_port *port = c->op.port;
    wsx_status timeout;

    unlink_connect(port, c);
    if (WSX_TRACING())
        wsx__trace_event(c->id, 0, "connect", "complete", st->bytes, st,
                         (const struct sockaddr *)&c->to.ss, c->to.len, NULL);
    /* Cancelled by the connect timeout: that is the reason, not the cancel (a connect that
     * completed before the cancel reached it keeps its own status). The kernel's codes of the
     * cancel stay beside it. */
    if (c->timed_out && st->wsa == WSA_OPERATION_ABORTED) {
        timeout = *st;
        timeout.wsa = WSAETIMEDOUT;
        timeout.kind = wsx_error_kind(WSAETIMEDOUT);
        st = &timeout;
    }
    if (st->wsa == 0 && setsockopt(s, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) != 0) {
        wsx_status err = wsx_status_from_wsa(WSAGetLastError());
        closesocket(s);
        c->fn(INVALID_SOCKET, &err, 0, c->user);
    } else if (st->wsa != 0) {
        closesocket(s);
        c->fn(INVALID_SOCKET, st, 0, c->user);
    } else {
        wsx__conn_handover(s, c->id);
        c->fn(s, st, st->bytes, c->user);
        wsx__conn_handover(INVALID_SOCKET, 0);
    }
    free(c);
    InterlockedDecrement(&port->live_others); /* last: wsx_port_destroy may free it from here */
}

void wsx__connect_sweep(wsx_port *p)
{
    DWORD now;

    if (p->connect_timeout == INFINITE)
        return;
    /* Under the lock: on_connect unlinks (and then frees) a connect only after taking it, so
     * the socket cannot be closed under CancelIoEx here. The time is read under it too: a
     * connect linked after an earlier reading would look 49 days old. */
    AcquireSRWLockExclusive(&p->connects_lock);
    now = GetTickCount();
    for (connect_op *c = p->connects; c; c = c->next) {
        /* A cancel that finds nothing (the connect not posted yet, or just completed) is tried
         * again at the next sweep. */
        if (!c->timed_out && now - c->started >= p->connect_timeout &&
            CancelIoEx((HANDLE)c->s, &c->op.ov))
            c->timed_out = 1;
    }
    ReleaseSRWLockExclusive(&p->connects_lock);
}

int wsx_connect(wsx_port *port, const wsx_sockaddr *to, const void *data, DWORD len,
                wsx_connect_fn fn, void *user)
{
    connect_op *c;
    wsx_sockaddr any;
    const wsx_ext *ext;
    DWORD sent = 0;
    unsigned long long id;
    int err;

    if (port == NULL || to == NULL || fn == NULL || (data == NULL && len > 0) ||
        wsx_addr_family_len(to->ss.ss_family) == 0 ||
        to->len < wsx_addr_family_len(to->ss.ss_family))
        return WSAEINVAL;
    /* ConnectEx completes only once all its data is sent, and no read can be posted before:
     * a peer that answers (an echo) would fill our receive window and stop reading, and both
     * would wait for ever. At most WSX_CONNECT_DATA_MAX goes with the connect. */
    if (len > WSX_CONNECT_DATA_MAX)
        len = WSX_CONNECT_DATA_MAX;
    c = calloc(1, sizeof *c + len);
    if (c == NULL)
        return WSAENOBUFS;
    c->data = (char *)(c + 1);
    if (len)
        memcpy(c->data, data, len);
    c->fn = fn;
    c->user = user;
    c->to = *to;
    c->s = WSASocketW(to->ss.ss_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (c->s == INVALID_SOCKET) {
        err = WSAGetLastError();
        free(c);
        return err;
    }
    /* An IPv6 socket reaches IPv4-mapped targets ([::ffff:a.b.c.d]) only with IPV6_V6ONLY off,
     * and Windows turns it on by default. */
    if (to->ss.ss_family == AF_INET6) {
        DWORD off = 0;
        setsockopt(c->s, IPPROTO_IPV6, IPV6_V6ONLY, (char *)&off, sizeof off);
    }
    /* ConnectEx refuses an unbound socket: bind to the family's wildcard, any port. */
    memset(&any, 0, sizeof any);
    any.ss.ss_family = to->ss.ss_family;
    any.len = wsx_addr_family_len(to->ss.ss_family);
    err = bind(c->s, (struct sockaddr *)&any.ss, any.len) != 0 ? WSAGetLastError() : 0;
    if (err == 0)
        err = wsx_ext_get(c->s, &ext);
    if (err == 0)
        err = wsx_ext_require(ext, WSX_EXT_BIT(WSX_EXT_CONNECTEX), NULL);
    if (err == 0)
        err = wsx_port_associate(port, c->s, 0, NULL);
    if (err == 0) {
        wsx_op_init(&c->op, WSX_OP_CONNECT, on_connect, c, NULL);
        wsx_op_begin(&c->op);
        c->op.port = port;
        c->started = GetTickCount();
        /* Read back below from a local: a pending connect's completion may free c at once. */
        id = c->id = WSX_TRACING() ? wsx__conn_id() : 0;
        InterlockedIncrement(&port->live_others);
        /* Linked before the post: the completion (on another thread) unlinks it. */
        AcquireSRWLockExclusive(&port->connects_lock);
        c->next = port->connects;
        if (c->next)
            c->next->prev = c;
        port->connects = c;
        ReleaseSRWLockExclusive(&port->connects_lock);
        /* Not in skip-on-success mode: success or pending, a packet comes. */
        err = ext->ConnectEx(c->s, (const struct sockaddr *)&to->ss, to->len, len ? c->data : NULL,
                             len, &sent, &c->op.ov)
                  ? 0
                  : WSAGetLastError();
        if (WSX_TRACING()) {
            wsx_status st;
            const char *phase = wsx__trace_post_phase(err ? -1 : 0, err, &st);
            char extra[32];
            snprintf(extra, sizeof extra, "\"posted\":%lu", (unsigned long)len);
            /* bytes: what went at once (sync-ok only); the completion line says the rest. */
            wsx__trace_event(id, 0, "connect", phase, err ? 0 : sent,
                             err && err != WSA_IO_PENDING ? &st : NULL,
                             (const struct sockaddr *)&to->ss, to->len, extra);
        }
        if (err == WSA_IO_PENDING) {
            err = 0;
        } else if (err) {
            unlink_connect(port, c);
            InterlockedDecrement(&port->live_others); /* no completion will come */
        }
    }
    if (err) {
        closesocket(c->s);
        free(c);
    }
    return err;
}
