#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define BATCH 64
/* How often a port looks for idle hot streams, and how long a full read may wait before its
 * stream is parked on a zero-byte read (stream.c, HOT_MS). */
#define SWEEP_MS 250
#define PARK_MS 500
/* Request/response fairness: a read of fewer bytes than this that completes at once, for a stream
 * already served inline since its last completion from the port, waits its turn when the port has
 * other streams (the stream marks such reads op->fair; not the read that follows a wakeup). Serving
 * it at once makes the others wait a whole chain of turns (ping-pong x100: p99 80-90 ms against
 * 37-47 ms with the rule, at the same rate). Bulk reads run on up to inline_cap: their bytes pay
 * for the run. docs/semantics.md P12. */
#define SMALL_READ 4096

/* Inline completions wait here until the thread is back at a delivery boundary. */
static WSX_TLS wsx_op *inline_head;
static WSX_TLS wsx_op *inline_tail;
static WSX_TLS int delivering;
/* The port whose completions this thread is delivering, and the ops it requeued meanwhile: they
 * wait for its next round, behind what the port holds then, without a round trip through the port
 * (two wineserver calls under Wine, a system call on Windows). */
static WSX_TLS wsx_port *serving;
/* The ports whose callbacks are running on this thread, outermost first: a callback may poll
 * another port, never one of these (it could deliver the calling stream's own completions inside
 * its callback), nor destroy one. Deeper nesting than the array is counted, not recorded, and
 * refuses both for every port. */
static WSX_TLS wsx_port *running[16];
static WSX_TLS int nrunning;
/* The ports this thread is inside wsx_port_poll of, outermost first (counted past the array). */
static WSX_TLS wsx_port *polled[16];
static WSX_TLS int npolled;
/* The port whose worker this thread is: only a worker's own round keeps a stop sentinel. */
static WSX_TLS wsx_port *worker_of;
static WSX_TLS wsx_op *turn_head;
static WSX_TLS wsx_op *turn_tail;

int wsx__on_wine(void)
{
    static volatile LONG known; /* 0: not asked yet, 1: Windows, 2: Wine */

    if (known == 0) {
        HMODULE nt = GetModuleHandleW(L"ntdll.dll");
        InterlockedExchange(&known, nt && GetProcAddress(nt, "wine_get_version") ? 2 : 1);
    }
    return known == 2;
}

int wsx_port_create(wsx_port **out, const wsx_port_opts *opts)
{
    wsx_port *p;
    int err;

    if (out == NULL)
        return WSAEINVAL;
    *out = NULL;
    wsx__trace_from_env();
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return WSAENOBUFS;
    p->inline_cap = opts && opts->inline_cap ? opts->inline_cap : 4;
    p->batch = opts && opts->batch ? opts->batch : wsx__on_wine() ? 1 : BATCH;
    p->send_timeout = opts && opts->send_timeout_ms ? opts->send_timeout_ms : 60000;
    p->connect_timeout = opts && opts->connect_timeout_ms ? opts->connect_timeout_ms : INFINITE;
    InitializeSRWLock(&p->connects_lock);
    if (p->batch > BATCH)
        p->batch = BATCH;
    InitializeSRWLock(&p->streams_lock);
    InitializeSRWLock(&p->sweep_lock);
    InitializeSRWLock(&p->cbs_lock);
    InitializeSListHead(&p->free_wr);
    p->last_sweep = (LONG)GetTickCount();
    err = wsx_buf_pool_create(&p->bufs, opts && opts->buffer_size ? opts->buffer_size : 65536,
                              opts ? opts->max_buffers : 0);
    if (err) {
        free(p);
        return err;
    }
    p->iocp = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    if (p->iocp == NULL) {
        err = wsx_error_from_win32(GetLastError());
        wsx_buf_pool_destroy(p->bufs);
        free(p);
        return err;
    }
    *out = p;
    return 0;
}

int wsx_port_associate(wsx_port *p, SOCKET s, int skip_on_success, int *skip_set)
{
    if (skip_set)
        *skip_set = 0;
    if (p == NULL || s == INVALID_SOCKET)
        return WSAEINVAL;
    if (CreateIoCompletionPort((HANDLE)s, p->iocp, WSX_KEY_IO, 0) == NULL)
        return wsx_error_from_win32(GetLastError());
    if (skip_on_success &&
        SetFileCompletionNotificationModes((HANDLE)s, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                          FILE_SKIP_SET_EVENT_ON_HANDLE) &&
        skip_set)
        *skip_set = 1;
    return 0;
}

/* A worker's stop sentinel: no OVERLAPPED, and a key no user packet can carry (port.h lets other
 * handles use any key but 0), the address of a private object. */
static const char stop_tag;
#define WSX_KEY_STOP ((ULONG_PTR)&stop_tag)

/* p: the port it came from. A user's op completed through the port (wsx_port_handle) never went
 * through wsx_port_post and has no op->port. */
static void deliver(wsx_port *p, wsx_op *op, DWORD bytes)
{
    wsx_status st;
    int pins;

    if (InterlockedExchange(&op->posted, 0) == 0) {
        /* Nobody posted it: a second completion for one operation. Never deliver it. */
        InterlockedIncrement64(&p->stale_dropped);
        return;
    }
    if (op->owner_gen && *op->owner_gen != op->gen) {
        /* The owner was closed and reused since this op was posted: not its completion. */
        InterlockedIncrement64(&p->stale_dropped);
        return;
    }
    if (op->sync_wsa)
        st = wsx_status_from_wsa(op->sync_wsa);
    else
        st = wsx_status_from_overlapped(&op->ov, bytes, op->is_read);
    pins = wsx__callback_begin(p);
    op->fn(op, &st);
    wsx__callback_end(pins);
}

int wsx__callback_begin(wsx_port *p)
{
    if (nrunning < (int)(sizeof running / sizeof running[0]))
        running[nrunning] = p;
    nrunning++;
    return wsx__stream_pins();
}

void wsx__callback_end(int pins)
{
    nrunning--;
    if (wsx__stream_pins() > pins)
        wsx__stream_unpin_to(pins); /* streams the callback opened: their pointers were its own */
}

int wsx__in_callback(void)
{
    return nrunning > 0;
}

/* One of p's callbacks runs on this thread (recorded, or beyond the record's depth). */
static int running_here(const wsx_port *p)
{
    if (nrunning > (int)(sizeof running / sizeof running[0]))
        return 1;
    for (int i = 0; i < nrunning; i++)
        if (running[i] == p)
            return 1;
    return 0;
}

/* This thread runs one of p's callbacks, polls it or is its worker: p must outlive what it is
 * doing. */
static int busy_here(const wsx_port *p)
{
    if (worker_of == p || running_here(p) || npolled > (int)(sizeof polled / sizeof polled[0]))
        return 1;
    for (int i = 0; i < npolled; i++)
        if (polled[i] == p)
            return 1;
    return 0;
}

static void drain_inline(void)
{
    while (inline_head) {
        wsx_op *op = inline_head;
        inline_head = op->inline_next;
        if (inline_head == NULL)
            inline_tail = NULL;
        op->inline_next = NULL;
        deliver(op->port, op, (DWORD)op->ov.InternalHigh);
    }
}

void wsx__port_flush(void)
{
    if (delivering || inline_head == NULL)
        return;
    delivering = 1;
    drain_inline();
    delivering = 0;
}

int wsx__port_scope_begin(void)
{
    if (delivering)
        return 0;
    delivering = 1;
    return 1;
}

void wsx__port_scope_end(int began)
{
    if (began)
        delivering = 0;
    wsx__port_flush();
}

/* The thread-local lists of ops (inline completions, requeued ones) are linked by inline_next. */
static void append(wsx_op **head, wsx_op **tail, wsx_op *op)
{
    op->inline_next = NULL;
    if (*tail)
        (*tail)->inline_next = op;
    else
        *head = op;
    *tail = op;
}

void wsx__port_complete(wsx_op *op, DWORD bytes, LONG status, int sync_wsa)
{
    wsx_port *p = op->port;
    /* A stream alone on its port runs small exchanges (ping-pong) up to 8 times the cap: only
     * the port's other owners (a listener) wait, for a bounded run. Bulk keeps the cap: under Wine
     * a pending send moves only by an APC that runs when the worker waits (4x the cap for 64 KiB
     * transfers lost a quarter of stream x1; docs/semantics.md P12). */
    unsigned cap = p->live_streams == 1 && bytes < SMALL_READ ? 8 * p->inline_cap : p->inline_cap;

    op->ov.Internal = (ULONG_PTR)(ULONG)status;
    op->ov.InternalHigh = bytes;
    op->sync_wsa = sync_wsa;
    if (op->streak && (*op->streak >= cap || (op->fair && bytes > 0 && bytes < SMALL_READ &&
                                              *op->streak >= 1 && p->live_streams > 1))) {
        /* Fairness: this owner had its run; its next completion waits its turn in the port. */
        *op->streak = 0;
        if (serving == p) {
            append(&turn_head, &turn_tail, op);
            InterlockedIncrement64(&p->requeued);
            return;
        }
        if (PostQueuedCompletionStatus(p->iocp, bytes, WSX_KEY_IO, &op->ov)) {
            InterlockedIncrement64(&p->requeued);
            return;
        }
    }
    if (op->streak)
        (*op->streak)++;
    InterlockedIncrement64(&p->inline_done);
    op->completed_inline = 1;
    append(&inline_head, &inline_tail, op);
}

int wsx__port_forward(wsx_op *op, wsx_port *to, DWORD bytes)
{
    wsx_port *from = op->port;

    op->port = to;
    InterlockedExchange(&op->posted, 1); /* its delivery here took it */
    if (PostQueuedCompletionStatus(to->iocp, bytes, WSX_KEY_IO, &op->ov)) {
        InterlockedDecrement64(&from->dequeued); /* counted where it is delivered */
        return 1;
    }
    InterlockedExchange(&op->posted, 0);
    op->port = from;
    return 0;
}

/* Hand the ops this thread requeued to the port itself (it stops taking completions). */
static void turn_to_port(void)
{
    while (turn_head) {
        wsx_op *op = turn_head;
        turn_head = op->inline_next;
        op->inline_next = NULL;
        /* A port that refuses the packet (out of memory, its handle gone) must not lose a
         * counted op: it completes inline, at the caller's next delivery boundary. */
        if (!PostQueuedCompletionStatus(op->port->iocp, (DWORD)op->ov.InternalHigh, WSX_KEY_IO,
                                        &op->ov))
            append(&inline_head, &inline_tail, op);
    }
    turn_tail = NULL;
}

static int port_batch(wsx_port *p, DWORD timeout)
{
    OVERLAPPED_ENTRY e[BATCH];
    ULONG n = 0, taken = 0;
    int stops = 0, rc = 0;
    int outer = !delivering;
    wsx_port *was = serving;
    /* Requeued in earlier rounds: they go after what the port holds. A poll nested in a callback
     * (maybe of another port) is a round of its own: the outer round's inline completions and
     * requeued ops wait for that round (draining them here would run a stream's callbacks inside
     * its own), and what the nested round requeues goes back to its port (its callbacks may
     * belong to another thread). */
    wsx_op *turn = outer ? turn_head : NULL;
    wsx_op *held_head = inline_head, *held_tail = inline_tail;
    wsx_op *held_turn_head = turn_head, *held_turn_tail = turn_tail;

    if (!outer)
        inline_head = inline_tail = NULL;
    turn_head = turn_tail = NULL;
    serving = p;
    for (;;) {
        if (!GetQueuedCompletionStatusEx(p->iocp, e, p->batch, &n, turn ? 0 : timeout, FALSE)) {
            DWORD err = GetLastError();
            if (turn == NULL)
                rc = err == WAIT_TIMEOUT ? WSAETIMEDOUT : wsx_error_from_win32(err);
            break;
        }
        delivering = 1;
        for (ULONG i = 0; i < n; i++) {
            if (e[i].lpOverlapped == NULL) {
                stops += e[i].lpCompletionKey == WSX_KEY_STOP;
                continue;
            }
            if (e[i].lpCompletionKey != WSX_KEY_IO)
                continue; /* not a wsx_op's OVERLAPPED (port.h, wsx_port_handle): never read it */
            InterlockedIncrement64(&p->dequeued);
            deliver(p, CONTAINING_RECORD(e[i].lpOverlapped, wsx_op, ov),
                    e[i].dwNumberOfBytesTransferred);
            drain_inline();
        }
        taken += n;
        /* With requeued ops waiting, what the port holds goes first, all of it (up to BATCH):
         * one entry per round would keep a backlog there waiting for many rounds. */
        if (turn == NULL || n < p->batch || stops || taken >= BATCH)
            break;
    }
    delivering = 1;
    while (turn) {
        wsx_op *op = turn;
        turn = op->inline_next;
        op->inline_next = NULL;
        deliver(op->port, op, (DWORD)op->ov.InternalHigh);
        drain_inline();
    }
    serving = was;
    if (outer) {
        delivering = 0;
    } else {
        turn_to_port();
        turn_head = held_turn_head;
        turn_tail = held_turn_tail;
        if (held_head) { /* every delivery above was drained: the held ones go first */
            held_tail->inline_next = inline_head;
            if (inline_head == NULL)
                inline_tail = held_tail;
            inline_head = held_head;
        }
    }
    /* One sentinel stops one worker: a worker's round keeps one and hands the extras to the
     * others; any other poll (by hand, nested in a callback) hands all back, or a worker would
     * wait for its sentinel for ever and wsx_port_stop with it. */
    for (int k = outer && worker_of == p; k < stops; k++)
        PostQueuedCompletionStatus(p->iocp, 0, WSX_KEY_STOP, NULL);
    return stops ? WSAESHUTDOWN : rc;
}

/* One thread at a time sweeps, at most every SWEEP_MS. */
static void maybe_sweep(wsx_port *p)
{
    DWORD now = GetTickCount();

    if (now - (DWORD)p->last_sweep < SWEEP_MS || !TryAcquireSRWLockExclusive(&p->sweep_lock))
        return;
    now = GetTickCount(); /* another thread may have swept since: its time, not ours, is last */
    if (now - (DWORD)p->last_sweep >= SWEEP_MS) {
        p->last_sweep = (LONG)now;
        wsx__stream_sweep(p, PARK_MS);
        wsx__connect_sweep(p);
        wsx__buf_pool_sweep(p->bufs);
    }
    ReleaseSRWLockExclusive(&p->sweep_lock);
}

int wsx_port_poll(wsx_port *p, DWORD timeout_ms)
{
    int rc;

    if (p == NULL)
        return WSAEINVAL;
    if (running_here(p))
        return WSAEINVAL; /* from one of its own callbacks */
    /* Counted from here to its last touch of p: wsx_port_destroy on another thread waits. */
    InterlockedIncrement(&p->polling);
    if (npolled < (int)(sizeof polled / sizeof polled[0]))
        polled[npolled] = p;
    npolled++;
    wsx__port_flush();
    rc = port_batch(p, timeout_ms);
    if (!delivering) {
        turn_to_port(); /* the caller may not poll again soon */
        wsx__port_flush();
        maybe_sweep(p);
    }
    npolled--;
    InterlockedDecrement(&p->polling);
    return rc;
}

static DWORD WINAPI worker_main(void *arg)
{
    wsx_port *p = arg;
    int rc;

    worker_of = p;
    /* Waits are bounded so that the sweep runs on a quiet port too; GetQueuedCompletionStatusEx
     * fails otherwise only when the port handle is gone. */
    do {
        rc = port_batch(p, SWEEP_MS);
        if (rc == 0 || rc == WSAETIMEDOUT)
            maybe_sweep(p);
    } while (rc == 0 || rc == WSAETIMEDOUT);
    turn_to_port();
    wsx__port_flush();
    return 0;
}

int wsx_port_start(wsx_port *p, int n)
{
    if (p == NULL || n < 1 || p->nthreads + n > WSX_MAX_WORKERS)
        return WSAEINVAL;
    for (int i = 0; i < n; i++) {
        HANDLE t = CreateThread(NULL, 0, worker_main, p, 0, &p->thread_ids[p->nthreads]);
        if (t == NULL)
            return wsx_error_from_win32(GetLastError());
        p->threads[p->nthreads++] = t;
    }
    return 0;
}

int wsx_port_stop(wsx_port *p)
{
    DWORD self = GetCurrentThreadId();

    if (p == NULL)
        return WSAEINVAL;
    for (int i = 0; i < p->nthreads; i++)
        if (p->thread_ids[i] == self)
            return WSAEINVAL;
    for (int i = 0; i < p->nthreads; i++)
        PostQueuedCompletionStatus(p->iocp, 0, WSX_KEY_STOP, NULL);
    for (int i = 0; i < p->nthreads; i++) {
        WaitForSingleObject(p->threads[i], INFINITE);
        CloseHandle(p->threads[i]);
    }
    p->nthreads = 0;
    return 0;
}

int wsx_port_post(wsx_port *p, wsx_op *op, DWORD bytes, LONG status)
{
    int err;

    if (p == NULL || op == NULL)
        return WSAEINVAL;
    err = wsx_op_begin(op);
    if (err)
        return err;
    op->port = p;
    op->ov.Internal = (ULONG_PTR)(ULONG)status;
    if (!PostQueuedCompletionStatus(p->iocp, bytes, WSX_KEY_IO, &op->ov)) {
        wsx_op_cancel_begin(op);
        return wsx_error_from_win32(GetLastError());
    }
    return 0;
}

void wsx_port_get_stats(wsx_port *p, wsx_port_stats *out)
{
    if (out == NULL)
        return;
    if (p == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    out->dequeued = InterlockedCompareExchange64(&p->dequeued, 0, 0);
    out->inline_done = InterlockedCompareExchange64(&p->inline_done, 0, 0);
    out->requeued = InterlockedCompareExchange64(&p->requeued, 0, 0);
    out->stale_dropped = InterlockedCompareExchange64(&p->stale_dropped, 0, 0);
}

HANDLE wsx_port_handle(wsx_port *p)
{
    return p ? p->iocp : NULL;
}

wsx_buf_pool *wsx_port_buffers(wsx_port *p)
{
    return p ? p->bufs : NULL;
}

int wsx_port_destroy(wsx_port *p)
{
    int err;

    if (p == NULL)
        return 0;
    /* From one of its callbacks, or a callback run while this thread polls it or works for it:
     * the round that runs it would go on with a freed port. */
    if (busy_here(p))
        return WSAEINVAL;
    /* Buffers of its pool still out (an on_data's, held by the user) would outlive the pool; a
     * poll on another thread is still in it. */
    if (p->live_streams != 0 || p->live_others != 0 || wsx_buf_pool_outstanding(p->bufs) != 0 ||
        p->polling != 0)
        return WSAEINPROGRESS;
    err = wsx_port_stop(p); /* WSAEINVAL from one of its workers: it would free what runs it */
    if (err)
        return err;
    wsx__stream_free_all(p);
    CloseHandle(p->iocp);
    wsx_buf_pool_destroy(p->bufs);
    free(p);
    return 0;
}
