#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    wsx_op op;
    wsx_listener *l;
    SOCKET s;
    int posted;      /* AcceptEx in flight, under the listener's lock (op.posted is not) */
    int reaped;      /* the reaper closed s: the error completion that follows is not a failure */
    int in_callback; /* the buffer is being read by the user's callback */
    int reused;      /* s came from the spare sockets (already associated with the port) */
    wsx_port *home;  /* the port its callback runs on (opts.spread) */
    char *buf;
} slot;

struct wsx_listener {
    CRITICAL_SECTION lock;
    wsx_port *port;
    wsx_port **ports; /* port, then opts.spread's: the slots' homes, each holding a count */
    int nports;
    SOCKET s;
    int af;
    const wsx_ext *ext;
    wsx_listener_opts o;
    wsx_accept_fn fn;
    void *user;
    /* slots[0..accepts) are kept posted; slots[accepts..nslots) are posted by the tick while
     * clients that connected and sent nothing hold more than half of the posted ones (an
     * initial-data AcceptEx completes only with data: each such client holds its slot); a
     * completed extra slot is not posted again by its completion, only by a later tick if the
     * need remains. */
    slot *slots;
    int nslots;
    int pending; /* AcceptEx posted and not yet completed */
    int busy;    /* callbacks running */
    int closing;
    HANDLE timer;
    wsx_sockaddr addr;
    SOCKET *spare; /* recycled sockets waiting for an AcceptEx (opts.reuse) */
    int nspare;
    struct recycle_op **recycling; /* DisconnectEx in flight, cancelled on close */
    int nrecycling;
    volatile LONG64 accepted, failed, reaped, recycled, reused, reuse_failed;
};

/* A DisconnectEx(TF_REUSE_SOCKET) in flight; counted in the listener's pending. */
typedef struct recycle_op {
    wsx_op op;
    wsx_listener *l;
    SOCKET s;
    int index;             /* in l->recycling */
    unsigned long long id; /* the connection's id in the trace */
} recycle_op;

int wsx_accept_post(const wsx_ext *ext, SOCKET listener, SOCKET as, void *buf, DWORD initial,
                    DWORD local_len, DWORD remote_len, OVERLAPPED *ov)
{
    wsx_sockaddr la, aa;
    BOOL listening = FALSE;
    int len = (int)sizeof listening;
    DWORD need;
    DWORD got = 0;

    if (ext == NULL || buf == NULL || ov == NULL || listener == INVALID_SOCKET ||
        as == INVALID_SOCKET)
        return WSAEINVAL;
    la.len = (int)sizeof la.ss;
    if (getsockname(listener, (struct sockaddr *)&la.ss, &la.len) != 0)
        return WSAEINVAL; /* not bound, so not listening */
    /* Each address area holds the family's sockaddr plus 16 bytes. */
    need = (DWORD)wsx_addr_family_len(la.ss.ss_family) + 16;
    if (local_len < need || remote_len < need)
        return WSAEFAULT;
    if (getsockopt(listener, SOL_SOCKET, SO_ACCEPTCONN, (char *)&listening, &len) != 0 ||
        !listening)
        return WSAEINVAL;
    /* The accept socket must be fresh: getsockname succeeds only on a bound socket. */
    aa.len = (int)sizeof aa.ss;
    if (getsockname(as, (struct sockaddr *)&aa.ss, &aa.len) == 0)
        return WSAEINVAL;
    if (ext->AcceptEx(listener, as, buf, initial, local_len, remote_len, &got, ov))
        return 0;
    len = WSAGetLastError();
    return len == WSA_IO_PENDING ? 0 : len;
}

static void listener_free(wsx_listener *l);

/* The last completion of a closed listener: free it and let its port go. */
static void listener_end(wsx_listener *l)
{
    wsx_port *p[64];
    int n = l->nports;

    memcpy(p, l->ports, (size_t)n * sizeof *p);
    listener_free(l);
    for (int i = 0; i < n; i++)
        InterlockedDecrement(&p[i]->live_others); /* last: a port may be freed from here */
}

static void listener_free(wsx_listener *l)
{
    for (int i = 0; i < l->nspare; i++)
        closesocket(l->spare[i]);
    free(l->spare);
    free(l->recycling);
    for (int i = 0; l->slots && i < l->nslots; i++)
        free(l->slots[i].buf);
    free(l->slots);
    free(l->ports);
    DeleteCriticalSection(&l->lock);
    free(l);
}

/* An accept socket the listener closes without handing it out (the listener is closing): its
 * AcceptEx may have taken a client already, with its first bytes. RST tells that client it was
 * not served; a plain close would send FIN, which a client that sent a request takes for an
 * empty answer. */
static int close_unserved(SOCKET s)
{
    struct linger lg = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_LINGER, (char *)&lg, sizeof lg);
    return closesocket(s) == 0 ? 0 : WSAGetLastError();
}

static int out_of_resources(int wsa)
{
    return wsa == WSAEMFILE || wsa == WSAENOBUFS;
}

/* Under the lock. A slot that cannot be posted stays idle; the timer retries it. */
static void post_slot(wsx_listener *l, slot *sl)
{
    if (sl->buf == NULL && (sl->buf = malloc(WSX_ACCEPT_BUF_LEN(l->o.initial_data))) == NULL)
        return;
    for (int tries = 0; tries < 16 && !l->closing; tries++) {
        DWORD got = 0;
        int err;

        sl->reused = l->nspare > 0;
        if (sl->reused)
            sl->s = l->spare[--l->nspare];
        else
            sl->s = WSASocketW(l->af, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
        if (sl->s == INVALID_SOCKET)
            return;
        wsx_accept_addrs_clear(sl->buf, l->o.initial_data);
        if (wsx_op_begin(&sl->op) != 0)
            return;
        sl->op.port = l->port;
        sl->reaped = 0;
        sl->posted = 1;
        l->pending++;
        /* The listener is never in skip-on-success mode: success or pending, a packet comes. */
        err = l->ext->AcceptEx(l->s, sl->s, sl->buf, l->o.initial_data, WSX_ACCEPT_ADDR_LEN,
                               WSX_ACCEPT_ADDR_LEN, &got, &sl->op.ov)
                  ? 0
                  : WSAGetLastError();
        if (WSX_TRACING()) {
            wsx_status st;
            const char *phase = wsx__trace_post_phase(err ? -1 : 0, err, &st);
            char extra[48];
            snprintf(extra, sizeof extra, "\"slot\":%d,\"initial\":%lu", (int)(sl - l->slots),
                     (unsigned long)l->o.initial_data);
            wsx__trace_event(0, 0, "accept", phase, 0, err && err != WSA_IO_PENDING ? &st : NULL,
                             NULL, 0, extra);
        }
        if (err == 0 || err == WSA_IO_PENDING)
            return;
        wsx_op_cancel_begin(&sl->op);
        sl->posted = 0;
        l->pending--;
        closesocket(sl->s);
        sl->s = INVALID_SOCKET;
        /* A recycled socket the provider refuses (Wine: R1): drop it, take a new one. */
        if (sl->reused) {
            InterlockedIncrement64(&l->reuse_failed);
            continue;
        }
        InterlockedIncrement64(&l->failed);
        /* A client that reset while in the backlog fails this accept at once; try the next. */
        if (err != WSAECONNRESET)
            return;
    }
}

static int finished(wsx_listener *l)
{
    return l->closing && l->pending == 0 && l->busy == 0;
}

static void on_accept(wsx_op *op, const wsx_status *st)
{
    slot *sl = op->owner;
    wsx_listener *l = sl->l;
    SOCKET s;
    wsx_accepted a;
    int done, gone;

    /* A spread listener's completions come to its port; the slot's own port takes it from here
     * (not while closing: the listener ends with what its port delivers). */
    if (op->port != sl->home) {
        /* Under the lock: a close after it finds the packet queued on the home port ahead of
         * anything that stops that port's worker (wsx_listener_close, then wsx_port_stop). */
        EnterCriticalSection(&l->lock);
        gone = !l->closing && wsx__port_forward(op, sl->home, st->bytes);
        LeaveCriticalSection(&l->lock);
        if (gone)
            return;
    }
    EnterCriticalSection(&l->lock);
    l->pending--;
    sl->posted = 0;
    s = sl->s;
    sl->s = INVALID_SOCKET;
    /* No socket left with a success: the reaper closed it just as the client's first bytes
     * completed the AcceptEx. Reaped all the same (it was silent for the limit). */
    if (WSX_TRACING() && (l->closing || st->wsa != 0 || s == INVALID_SOCKET)) {
        char extra[48];
        snprintf(extra, sizeof extra, "\"slot\":%d%s", (int)(sl - l->slots),
                 sl->reaped ? ",\"reaped\":true" : "");
        wsx__trace_event(0, 0, "accept", "complete", st->bytes, st, NULL, 0, extra);
    }
    if (l->closing || st->wsa != 0 || s == INVALID_SOCKET) {
        /* A reaped slot was counted when the reaper closed it. */
        if (!l->closing && !sl->reaped)
            InterlockedIncrement64(sl->reused ? &l->reuse_failed : &l->failed);
        if (s != INVALID_SOCKET && l->closing)
            close_unserved(s);
        else if (s != INVALID_SOCKET)
            closesocket(s);
        /* Out of sockets or memory (the process's or the system's: EMFILE under Wine): the
         * next accept would fail at once for the same client, over and over. The slot waits
         * for the timer (1 s), as an accept loop pauses on EMFILE. */
        if (sl - l->slots < l->o.accepts && !out_of_resources(st->wsa))
            post_slot(l, sl);
        done = finished(l);
        LeaveCriticalSection(&l->lock);
        if (done)
            listener_end(l);
        return;
    }
    sl->in_callback = 1;
    l->busy++;
    LeaveCriticalSection(&l->lock);

    memset(&a, 0, sizeof a);
    a.s = s;
    a.port = op->port;
    a.data = sl->buf;
    a.len = st->bytes;
    a.eof = l->o.initial_data > 0 && st->bytes == 0;
    a.reused = sl->reused;
    if (sl->reused)
        InterlockedIncrement64(&l->reused);
    /* Required before the socket acts as a connected one (getpeername, shutdown...). */
    gone = setsockopt(s, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (char *)&l->s, sizeof l->s) != 0
               ? WSAGetLastError()
               : wsx_accept_addrs(l->ext, s, sl->buf, l->o.initial_data, &a.local, &a.remote);
    if (gone) {
        /* The client is already gone (Wine leaves no address after a quick RST). */
        if (WSX_TRACING()) {
            wsx_status why = wsx_status_from_wsa(gone);
            char extra[48];
            snprintf(extra, sizeof extra, "\"slot\":%d,\"reason\":\"gone\"", (int)(sl - l->slots));
            wsx__trace_event(0, 0, "accept", "complete", st->bytes, &why, NULL, 0, extra);
        }
        closesocket(s);
        InterlockedIncrement64(&l->failed);
    } else {
        unsigned long long id = 0;
        if (WSX_TRACING()) {
            char extra[48];
            snprintf(extra, sizeof extra, "\"slot\":%d%s", (int)(sl - l->slots),
                     a.eof ? ",\"eof\":true" : "");
            id = wsx__conn_id();
            wsx__trace_event(id, 0, "accept", "complete", st->bytes, st,
                             (const struct sockaddr *)&a.remote.ss, a.remote.len, extra);
        }
        /* The two calls above gave wsx_listener_close time to return: after it, no callback
         * starts (one already running finishes). */
        EnterCriticalSection(&l->lock);
        gone = l->closing;
        LeaveCriticalSection(&l->lock);
        if (gone) {
            close_unserved(s);
        } else {
            InterlockedIncrement64(&l->accepted);
            wsx__conn_handover(s, id);
            l->fn(l, &a, l->user);
            wsx__conn_handover(INVALID_SOCKET, 0);
        }
    }

    EnterCriticalSection(&l->lock);
    sl->in_callback = 0;
    l->busy--;
    if (sl - l->slots < l->o.accepts)
        post_slot(l, sl);
    done = finished(l);
    LeaveCriticalSection(&l->lock);
    if (done)
        listener_end(l);
}

/* Every second: reap connect-no-send clients, post the slots that could not be posted, and more
 * slots while silent clients hold more than half of those posted. */
static VOID CALLBACK on_tick(PVOID arg, BOOLEAN fired)
{
    wsx_listener *l = arg;
    int posted = 0, silent = 0;

    (void)fired;
    EnterCriticalSection(&l->lock);
    for (int i = 0; i < l->nslots && !l->closing; i++) {
        slot *sl = &l->slots[i];
        if (sl->posted) {
            DWORD secs = 0xFFFFFFFF;
            int len = (int)sizeof secs;
            posted++;
            /* An AcceptEx that has completed (its packet still in the port) got the client's
             * bytes: not a silent client. */
            if (l->o.initial_data == 0 || sl->s == INVALID_SOCKET ||
                HasOverlappedIoCompleted(&sl->op.ov))
                continue;
            /* 0xFFFFFFFF: no client yet. Closing the socket completes its AcceptEx with an
             * error; on_accept then counts it as reaped and posts a fresh one. */
            if (getsockopt(sl->s, SOL_SOCKET, SO_CONNECT_TIME, (char *)&secs, &len) != 0 ||
                secs == 0xFFFFFFFF)
                continue;
            silent++;
            if (l->o.accept_timeout_s != 0 && secs >= l->o.accept_timeout_s) {
                /* Counted now: its completion may come after the listener has closed (the
                 * counts read at a stop missed the last reaps). */
                sl->reaped = 1;
                InterlockedIncrement64(&l->reaped);
                if (WSX_TRACING()) {
                    char extra[64];
                    snprintf(extra, sizeof extra,
                             "\"slot\":%d,\"reason\":\"reaped\",\"connected_s\":%lu", i,
                             (unsigned long)secs);
                    wsx__trace_event(0, 0, "close", "sync-ok", 0, NULL, NULL, 0, extra);
                }
                closesocket(sl->s);
                sl->s = INVALID_SOCKET;
            }
        } else if (!sl->in_callback && i < l->o.accepts) {
            post_slot(l, sl);
        }
    }
    /* Keep at least half of the pool's worth free for clients that do send; the extra slots'
     * silent clients are reaped like the others. */
    for (int i = l->o.accepts; i < l->nslots && !l->closing && 2 * silent > posted; i++) {
        slot *sl = &l->slots[i];
        if (!sl->posted && !sl->in_callback) {
            post_slot(l, sl);
            posted += sl->posted;
        }
    }
    LeaveCriticalSection(&l->lock);
}

int wsx_listener_open(wsx_port *port, const wsx_sockaddr *addr, const wsx_listener_opts *opts,
                      wsx_accept_fn fn, void *user, wsx_listener **out)
{
    wsx_listener *l;
    const char *missing = NULL;
    int err = 0;

    if (out)
        *out = NULL;
    if (port == NULL || addr == NULL || fn == NULL || out == NULL ||
        wsx_addr_family_len(addr->ss.ss_family) == 0 ||
        (opts &&
         (opts->accepts < 0 || opts->accepts > 4096 ||
          opts->initial_data > wsx_buf_pool_size(wsx_port_buffers(port)) || opts->nspread < 0 ||
          opts->nspread > 63 || (opts->nspread > 0 && (opts->spread == NULL || opts->reuse)))))
        return WSAEINVAL; /* the first bytes must fit a buffer of the port (wsx_stream_open) */
    for (int i = 0; opts && i < opts->nspread; i++)
        if (opts->spread[i] == NULL ||
            opts->initial_data > wsx_buf_pool_size(wsx_port_buffers(opts->spread[i])))
            return WSAEINVAL;
    l = calloc(1, sizeof *l);
    if (l == NULL)
        return WSAENOBUFS;
    if (opts)
        l->o = *opts;
    l->o.spread = NULL; /* the caller's array: copied into ports below */
    if (l->o.accepts == 0)
        l->o.accepts = 8;
    l->port = port;
    l->nports = 1 + l->o.nspread;
    l->ports = calloc((size_t)l->nports, sizeof *l->ports);
    if (l->ports == NULL) {
        free(l);
        return WSAENOBUFS;
    }
    l->ports[0] = port;
    for (int i = 1; i < l->nports; i++)
        l->ports[i] = opts->spread[i - 1];
    l->fn = fn;
    l->user = user;
    l->af = addr->ss.ss_family;
    InitializeCriticalSection(&l->lock);
    /* Extra slots only where silent clients can hold them (initial-data accepts). */
    l->nslots = l->o.initial_data ? 4 * l->o.accepts : l->o.accepts;
    l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
    l->spare = calloc((size_t)l->o.accepts, sizeof *l->spare);
    l->recycling = calloc((size_t)l->o.accepts, sizeof *l->recycling);
    l->s = WSASocketW(l->af, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (l->slots == NULL || l->spare == NULL || l->recycling == NULL || l->s == INVALID_SOCKET) {
        err = l->slots && l->spare && l->recycling ? WSAGetLastError() : WSAENOBUFS;
        goto fail;
    }
    for (int i = 0; i < l->nslots; i++) {
        slot *sl = &l->slots[i];
        sl->l = l;
        sl->s = INVALID_SOCKET;
        sl->home = l->ports[i % l->nports];
        wsx_op_init(&sl->op, WSX_OP_ACCEPT, on_accept, sl, NULL);
        if (i < l->o.accepts && (sl->buf = malloc(WSX_ACCEPT_BUF_LEN(l->o.initial_data))) == NULL) {
            err = WSAENOBUFS;
            goto fail;
        }
    }
    if (l->af == AF_INET6 &&
        IN6_IS_ADDR_UNSPECIFIED(&((const SOCKADDR_IN6 *)&addr->ss)->sin6_addr)) {
        DWORD off =
            0; /* [::] also serves IPv4 clients (as ::ffff:a.b.c.d); Windows' default is 1 */
        setsockopt(l->s, IPPROTO_IPV6, IPV6_V6ONLY, (char *)&off, sizeof off);
    }
    if (bind(l->s, (const struct sockaddr *)&addr->ss, addr->len) != 0 ||
        listen(l->s, l->o.backlog ? l->o.backlog : SOMAXCONN) != 0) {
        err = WSAGetLastError();
        goto fail;
    }
    l->addr.len = (int)sizeof l->addr.ss;
    getsockname(l->s, (struct sockaddr *)&l->addr.ss, &l->addr.len);
    err = wsx_ext_get(l->s, &l->ext);
    if (err == 0)
        err = wsx_ext_require(
            l->ext, WSX_EXT_BIT(WSX_EXT_ACCEPTEX) | WSX_EXT_BIT(WSX_EXT_GETACCEPTEXSOCKADDRS),
            &missing);
    if (err == 0)
        err = wsx_port_associate(port, l->s, 0, NULL);
    if (err == 0 &&
        !CreateTimerQueueTimer(&l->timer, NULL, on_tick, l, 1000, 1000, WT_EXECUTEDEFAULT))
        err = wsx_error_from_win32(GetLastError());
    if (err)
        goto fail;
    for (int i = 0; i < l->nports; i++)
        InterlockedIncrement(&l->ports[i]->live_others);
    EnterCriticalSection(&l->lock);
    for (int i = 0; i < l->o.accepts; i++)
        post_slot(l, &l->slots[i]);
    LeaveCriticalSection(&l->lock);
    *out = l;
    return 0;

fail:
    if (l->s != INVALID_SOCKET && l->s != 0)
        closesocket(l->s);
    listener_free(l);
    return err;
}

static void on_recycled(wsx_op *op, const wsx_status *st)
{
    recycle_op *r = op->owner;
    wsx_listener *l = r->l;
    int done;

    if (WSX_TRACING())
        wsx__trace_event(r->id, 0, "disconnect", "complete", st->bytes, st, NULL, 0,
                         "\"flags\":\"TF_REUSE_SOCKET\"");
    EnterCriticalSection(&l->lock);
    l->pending--;
    l->recycling[r->index] = l->recycling[--l->nrecycling];
    l->recycling[r->index]->index = r->index;
    if (st->wsa == 0 && !l->closing && l->nspare < l->o.accepts) {
        l->spare[l->nspare++] = r->s;
        InterlockedIncrement64(&l->recycled);
    } else {
        closesocket(r->s);
    }
    done = finished(l);
    LeaveCriticalSection(&l->lock);
    free(r);
    if (done)
        listener_end(l);
}

int wsx_listener_recycle(wsx_listener *l, SOCKET s)
{
    const wsx_ext *ext = NULL;
    recycle_op *r;
    int err = 0;
    BOOL skip;

    if (l == NULL || s == INVALID_SOCKET) {
        if (s != INVALID_SOCKET)
            closesocket(s);
        return WSAEINVAL;
    }
    r = l->o.reuse ? malloc(sizeof *r) : NULL;
    EnterCriticalSection(&l->lock);
    /* Bounded: Wine 8.0 never completes these (R1), so at most `accepts` wait at a time. */
    if (r == NULL || l->closing || l->nspare + l->nrecycling >= l->o.accepts ||
        wsx_ext_get(s, &ext) != 0) {
        LeaveCriticalSection(&l->lock);
        free(r);
        closesocket(s);
        return 0;
    }
    r->l = l;
    r->s = s;
    r->id = wsx__conn_take(s);
    r->index = l->nrecycling;
    l->recycling[l->nrecycling++] = r;
    wsx_op_init(&r->op, WSX_OP_DISCONNECT, on_recycled, r, NULL);
    wsx_op_begin(&r->op);
    r->op.port = l->port;
    l->pending++;
    /* The socket is associated with the port (its stream's), maybe in skip-on-success mode. A
     * success at once queues a packet unless that mode is on, so set it to know: completing inline
     * while a packet also comes would deliver twice and free the op under the second. */
    skip = SetFileCompletionNotificationModes((HANDLE)s, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                             FILE_SKIP_SET_EVENT_ON_HANDLE);
    if (ext->DisconnectEx(s, &r->op.ov, TF_REUSE_SOCKET, 0)) {
        if (skip)
            wsx__port_complete(&r->op, 0, 0, 0);
    } else if ((err = WSAGetLastError()) != WSA_IO_PENDING) {
        wsx__port_complete(&r->op, 0, 0, err);
    } else if (wsx__on_wine() && r->op.ov.Internal != (ULONG_PTR)STATUS_PENDING) {
        /* Wine 8.0 (R1): it shut down at once (the status is in the OVERLAPPED already) and says
         * pending, but queues no completion, and the socket cannot be reused: end it now as
         * unsupported, or it would hold the listener (and wsx_port_destroy) for ever. */
        err = WSAEOPNOTSUPP;
        InterlockedIncrement64(&l->reuse_failed);
        wsx__port_complete(&r->op, 0, 0, err);
    }
    if (WSX_TRACING()) {
        wsx_status st;
        const char *phase = wsx__trace_post_phase(err ? -1 : 0, err, &st);
        wsx__trace_event(r->id, 0, "disconnect", phase, 0,
                         err && err != WSA_IO_PENDING ? &st : NULL, NULL, 0,
                         "\"flags\":\"TF_REUSE_SOCKET\"");
    }
    LeaveCriticalSection(&l->lock);
    wsx__port_flush();
    return 0;
}

int wsx_listener_close(wsx_listener *l)
{
    int done;

    if (l == NULL)
        return WSAEINVAL;
    /* Waits for a tick that is running; no tick starts after. */
    if (l->timer) {
        DeleteTimerQueueTimer(NULL, l->timer, INVALID_HANDLE_VALUE);
        l->timer = NULL;
    }
    EnterCriticalSection(&l->lock);
    if (l->closing) {
        LeaveCriticalSection(&l->lock);
        return WSAENOTCONN;
    }
    l->closing = 1;
    /* AcceptEx runs on the listening socket: cancel there, then close everything. */
    CancelIoEx((HANDLE)l->s, NULL);
    for (int i = 0; i < l->nslots; i++) {
        if (l->slots[i].s != INVALID_SOCKET) {
            close_unserved(l->slots[i].s);
            l->slots[i].s = INVALID_SOCKET;
        }
    }
    for (int i = 0; i < l->nrecycling; i++)
        CancelIoEx((HANDLE)l->recycling[i]->s, &l->recycling[i]->op.ov);
    closesocket(l->s);
    done = finished(l);
    LeaveCriticalSection(&l->lock);
    if (done)
        listener_end(l);
    return 0;
}

int wsx_accepted_close(const wsx_accepted *a, int abortive)
{
    unsigned long long id;

    if (a == NULL || a->s == INVALID_SOCKET)
        return WSAEINVAL;
    id = wsx__conn_take(a->s);
    if (WSX_TRACING()) {
        char extra[64];
        snprintf(extra, sizeof extra, "\"how\":\"%s\",\"pending\":0,\"why\":\"%s\"",
                 abortive ? "abortive" : "graceful", a->eof ? "eof" : "unserved");
        wsx__trace_event(id, 0, "close", "sync-ok", 0, NULL, NULL, 0, extra);
    }
    if (abortive)
        return close_unserved(a->s);
    return closesocket(a->s) == 0 ? 0 : WSAGetLastError();
}

int wsx_listener_address(wsx_listener *l, wsx_sockaddr *out)
{
    if (l == NULL || out == NULL)
        return WSAEINVAL;
    *out = l->addr;
    return 0;
}

void wsx_listener_get_stats(wsx_listener *l, wsx_listener_stats *out)
{
    if (out == NULL)
        return;
    if (l == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    out->accepted = InterlockedCompareExchange64(&l->accepted, 0, 0);
    out->failed = InterlockedCompareExchange64(&l->failed, 0, 0);
    out->reaped = InterlockedCompareExchange64(&l->reaped, 0, 0);
    out->recycled = InterlockedCompareExchange64(&l->recycled, 0, 0);
    out->reused = InterlockedCompareExchange64(&l->reused, 0, 0);
    out->reuse_failed = InterlockedCompareExchange64(&l->reuse_failed, 0, 0);
}
