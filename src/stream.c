#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GATHER 16
/* Bytes one WSASend carries at most. A send completes once all its bytes are in the socket's
 * buffer, so against a peer that reads, completions are the only sign of progress the send
 * timeout gets (Wine has no SIO_TCP_INFO): a 40 MB send to a client reading 4 MB/s steadily
 * looked stuck for 10 s. 1 MiB per send-timeout is the least a reading peer must take. */
#define MAX_SEND (1u << 20)
/* Adaptive reads (zero_byte_reads on): a stream starts cold, posting zero-byte reads that hold no
 * buffer. Two reads in a row that find data within HOT_MS of their post make it hot: it then posts
 * full reads, which save the non-blocking recv after each wakeup (three wineserver round trips per
 * read under Wine). A hot stream whose read has been pending for PARK_MS is parked by the port's
 * sweep: the read is cancelled, its buffer goes back to the pool, and the stream is cold again. */
#define HOT_MS 50
#define HOT_READS 2
/* A graceful close reads on after its FIN and discards what comes, until the peer's FIN or this
 * long: closing a socket with unread data sends RST, and on Linux (so under Wine) and Windows
 * alike that throws away what the peer has not received yet, the end of our reply. */
#define LINGER_MS 2000

/* TransmitFile state, allocated on a stream's first wsx_stream_transmit_file (most never call it)
 * and kept for the stream object's life. */
typedef struct wsx__tf {
    wsx_op op;
    int req; /* requested and not completed yet */
    HANDLE file;
    ULONGLONG offset;
    DWORD len;
    wsx_buf *head, *tail;
    wsx__sendq q_after; /* sends queued after the file wait here until it is done */
    DWORD sent_at;      /* GetTickCount when the TransmitFile was posted (send timeout) */
} wsx__tf;

#define TF_REQ(s) ((s)->tf && (s)->tf->req)

/* Send state: the send op and queue. A stream takes one from its port when it has something to
 * send and gives it back once that is sent, so an idle stream holds none (a wsx_op is 104 bytes
 * on x64). Given back only after the send's completion was delivered: the OVERLAPPED is free. */
typedef struct wsx__wr {
    SLIST_ENTRY entry; /* first: the port's free list is an interlocked SLIST */
    wsx_op op;
    wsx__sendq q;
    DWORD sent_at; /* GetTickCount when the send in flight was posted (send timeout) */
} wsx__wr;

/* Free send states a port keeps beyond those in use; more go back to the heap at its sweep. */
#define WR_KEEP 256

/* A copy of a callbacks struct, shared by the port's streams that passed an equal one: a stream
 * holds a pointer (8 bytes) instead of a copy (40). */
struct wsx__cbs {
    wsx_stream_callbacks cb;
    struct wsx__cbs *next;
};

struct wsx_stream {
    SRWLOCK lock; /* 8 bytes where a CRITICAL_SECTION takes 40 */
    wsx_port *port;
    SOCKET sock;
    unsigned long long id; /* connection id in the trace */
    volatile DWORD owner;  /* the thread holding lock (0: none): the stream lock is recursive */
    volatile LONG gen;
    wsx_op rop;
    wsx__wr *wr;     /* NULL while nothing waits to be sent or is in flight */
    DWORD read_at;   /* GetTickCount when the read in flight was posted */
    DWORD last_data; /* GetTickCount of the last data received or sent (or of the open) */
    unsigned streak; /* run of inline completions (port.c's fairness cap) */
    /* Every idle connection holds a stream object: its small fields share one word. depth: lock
     * recursion, the stream may finish only at the outermost level. pending: ops the kernel (or
     * the port) owns, at most read + send + TransmitFile. */
    unsigned depth : 8, pending : 4;
    /* In flight, as this stream sees it (under its lock). op.posted is cleared by the port before
     * the handler gets the lock, so the stream must not decide on it. */
    unsigned reading : 1, writing : 1, transmitting : 1;
    unsigned zero : 1, skip : 1, eof : 1, shut_req : 1, shut_done : 1, close_req : 1, closed : 1,
        finished : 1, why_set : 1, throttled : 1, hot : 2, parking : 1, woken : 1, after_wake : 1,
        lingering : 1;
    wsx_buf *rbuf;
    wsx__tf *tf;
    size_t peak_queued;
    unsigned long long bytes_in, bytes_out;
    wsx_status why;
    DWORD max_queued;               /* beside why's 20 bytes, where a size_t would cost 8 more */
    const wsx_stream_callbacks *cb; /* the port's copy */
    union {
        void *user;
        struct wsx_stream *next_free; /* while on the port's free list */
    } u;
    struct wsx_stream *next_all;
};

#define STREAM_SLAB 32
struct wsx__slab {
    struct wsx__slab *next;
    wsx_stream s[STREAM_SLAB];
};

/* The buffer of a zero-byte read: WSARecv wants a WSABUF, the kernel keeps no bytes of it. */
static char zero_byte[1];
/* Where a closing stream's reads go: what arrives after our FIN is read only to be dropped, so
 * every lingering stream shares this one, and a close never waits for (or fails on) the pool. */
static char discard[4096];

static volatile LONG64 next_id;
static WSX_TLS struct handover {
    SOCKET sock;
    unsigned long long id;
} handover;

unsigned long long wsx__conn_id(void)
{
    return (unsigned long long)InterlockedIncrement64(&next_id);
}

void wsx__conn_handover(SOCKET sock, unsigned long long id)
{
    handover.sock = sock;
    handover.id = id;
}

unsigned long long wsx__conn_take(SOCKET sock)
{
    unsigned long long id = handover.sock == sock ? handover.id : 0;

    handover.id = 0;
    return id;
}

/* Trace a post; keeps WSAGetLastError() for the caller. */
static void trace_post(wsx_stream *s, const char *op, int rc, DWORD n, DWORD posted_bytes)
{
    int err = rc ? WSAGetLastError() : 0;
    wsx_status st;
    const char *phase = wsx__trace_post_phase(rc, err, &st);
    char extra[48];

    snprintf(extra, sizeof extra, "\"posted\":%lu", (unsigned long)posted_bytes);
    wsx__trace_event(s->id, s->gen, op, phase, rc == 0 ? n : 0,
                     strcmp(phase, "sync-error") == 0 ? &st : NULL, NULL, 0, extra);
    WSASetLastError(err);
}

void wsx__sendq_push(wsx__sendq *q, wsx_buf *b)
{
    wsx_buf *t = q->tail;
    DWORD n = b->len - b->off;

    /* A small buffer's bytes go into the room left in the last one, and the buffer back to its
     * pool: otherwise each small message queued for a slow reader (or each byte an echo reads
     * from a client that sends them one at a time) holds a whole buffer, while max_queued counts
     * bytes. Only up to a quarter of a buffer is copied, so every buffer but the last is at least
     * a quarter full. Writing past a buffer's len is safe while a WSASend of it is in flight:
     * the kernel reads only the bytes it was given. */
    if (t && n <= t->cap / 4 && n <= t->cap - t->len) {
        memcpy(t->data + t->len, b->data + b->off, n);
        t->len += n;
        q->queued += n;
        wsx_buf_put(b);
        return;
    }
    b->next = NULL;
    if (q->tail)
        q->tail->next = b;
    else
        q->head = b;
    q->tail = b;
    q->queued += b->len - b->off;
}

int wsx__sendq_gather(const wsx__sendq *q, WSABUF *wb, int max, DWORD max_bytes, DWORD *total)
{
    int n = 0;

    *total = 0;
    for (wsx_buf *b = q->head; b && n < max && *total < max_bytes; b = b->next) {
        if (b->len == b->off)
            continue;
        wb[n].buf = b->data + b->off;
        wb[n].len = min(b->len - b->off, max_bytes - *total);
        *total += wb[n].len;
        n++;
    }
    return n;
}

void wsx__sendq_advance(wsx__sendq *q, DWORD n)
{
    while (q->head) {
        wsx_buf *b = q->head;
        DWORD left = b->len - b->off;
        DWORD take = n < left ? n : left;
        b->off += take;
        q->queued -= take;
        n -= take;
        if (b->off < b->len)
            break; /* partial: the rest of this buffer goes first next time */
        q->head = b->next;
        if (q->head == NULL)
            q->tail = NULL;
        wsx_buf_put(b);
    }
}

void wsx__sendq_clear(wsx__sendq *q)
{
    while (q->head) {
        wsx_buf *b = q->head;
        q->head = b->next;
        wsx_buf_put(b);
    }
    q->tail = NULL;
    q->queued = 0;
}

static void on_recv(wsx_op *op, const wsx_status *st);
static void on_send(wsx_op *op, const wsx_status *st);
static void tf_clear(wsx_stream *s);

static wsx_stream *stream_alloc(wsx_port *p)
{
    wsx_stream *s;

    AcquireSRWLockExclusive(&p->streams_lock);
    if (p->free_streams == NULL) {
        /* STREAM_SLAB objects to a heap block: one block header less per connection. */
        struct wsx__slab *b = calloc(1, sizeof *b);
        if (b) {
            b->next = p->slabs;
            p->slabs = b;
            for (int i = STREAM_SLAB - 1; i >= 0; i--) {
                s = &b->s[i];
                InitializeSRWLock(&s->lock);
                s->next_all = p->all_streams;
                p->all_streams = s;
                s->u.next_free = p->free_streams;
                p->free_streams = s;
            }
        }
    }
    s = p->free_streams;
    if (s) {
        p->free_streams = s->u.next_free;
        InterlockedIncrement(&p->live_streams);
    }
    ReleaseSRWLockExclusive(&p->streams_lock);
    return s;
}

/* Under streams_lock: s's entry among the port's pins (see pin()), or -1. */
static int pin_find(const wsx_port *p, const wsx_stream *s)
{
    for (int i = 0; i < p->npinned; i++)
        if (p->pinned[i].s == s)
            return i;
    return -1;
}

/* Back to the port's free list with a new generation: a completion still addressed to the old
 * one is dropped by the port. A pinned stream is only marked ended: its pin's release does it. */
static void stream_release(wsx_stream *s)
{
    wsx_port *p = s->port;
    int i;

    AcquireSRWLockExclusive(&p->streams_lock);
    if ((i = pin_find(p, s)) >= 0) {
        p->pinned[i].ended = 1;
        ReleaseSRWLockExclusive(&p->streams_lock);
        return;
    }
    InterlockedIncrement(&s->gen);
    s->u.next_free = p->free_streams;
    p->free_streams = s;
    ReleaseSRWLockExclusive(&p->streams_lock);
    /* Last: from here wsx_port_destroy (on another thread) may free the port. */
    InterlockedDecrement(&p->live_streams);
}

static void wr_trim(wsx_port *p, USHORT keep)
{
    SLIST_ENTRY *e;

    while (QueryDepthSList(&p->free_wr) > keep && (e = InterlockedPopEntrySList(&p->free_wr)))
        free(e);
}

void wsx__stream_free_all(wsx_port *p)
{
    for (wsx_stream *s = p->all_streams; s; s = s->next_all)
        free(s->tf);
    while (p->slabs) {
        struct wsx__slab *b = p->slabs;
        p->slabs = b->next;
        free(b);
    }
    p->all_streams = p->free_streams = NULL;
    free(p->pinned);
    p->pinned = NULL;
    p->npinned = p->pinned_cap = 0;
    wr_trim(p, 0);
    while (p->cbs) {
        struct wsx__cbs *c = p->cbs;
        p->cbs = c->next;
        free(c);
    }
}

/* The port's copy of *cb (made on first use; copies live as long as the port). NULL: no memory. */
static const wsx_stream_callbacks *cbs_intern(wsx_port *p, const wsx_stream_callbacks *cb)
{
    struct wsx__cbs *c;

    AcquireSRWLockShared(&p->cbs_lock);
    for (c = p->cbs; c && memcmp(&c->cb, cb, sizeof *cb) != 0; c = c->next)
        ;
    ReleaseSRWLockShared(&p->cbs_lock);
    if (c)
        return &c->cb;
    AcquireSRWLockExclusive(&p->cbs_lock);
    for (c = p->cbs; c && memcmp(&c->cb, cb, sizeof *cb) != 0; c = c->next)
        ;
    if (c == NULL && (c = malloc(sizeof *c)) != NULL) {
        c->cb = *cb;
        c->next = p->cbs;
        p->cbs = c;
    }
    ReleaseSRWLockExclusive(&p->cbs_lock);
    return c ? &c->cb : NULL;
}

/* Bytes waiting to be sent, those queued behind a TransmitFile included: backpressure counts
 * them all, or a peer that stops reading during a file could grow the queue by sending. */
static size_t queued(const wsx_stream *s)
{
    return (s->wr ? s->wr->q.queued : 0) + (s->tf ? s->tf->q_after.queued : 0);
}

/* The stream's send state, from the port's free list or the heap. NULL: no memory. */
static wsx__wr *wr_get(wsx_stream *s)
{
    wsx__wr *w = s->wr;

    if (w)
        return w;
    w = (wsx__wr *)InterlockedPopEntrySList(&s->port->free_wr);
    if (w == NULL &&
        (w = malloc(sizeof *w)) == NULL) /* heap blocks are 16-aligned, as SLIST wants */
        return NULL;
    wsx_op_init(&w->op, WSX_OP_SEND, on_send, s, &s->gen);
    w->op.streak = &s->streak;
    memset(&w->q, 0, sizeof w->q);
    s->wr = w;
    return w;
}

/* Back to the port once nothing is queued and the last send's completion was delivered. */
static void wr_put_if_idle(wsx_stream *s)
{
    if (s->wr && !s->writing && s->wr->q.head == NULL) {
        InterlockedPushEntrySList(&s->port->free_wr, &s->wr->entry);
        s->wr = NULL;
    }
}

/* The stream lock is recursive: a callback may call wsx_stream_* on its own stream. Only the
 * owning thread ever reads its own id in `owner`, so the unlocked read is safe. */
static WSX_TLS int locks_held; /* stream locks this thread holds (callbacks run under one) */

static void s_enter(wsx_stream *s)
{
    DWORD me = GetCurrentThreadId();

    if (s->owner != me) {
        AcquireSRWLockExclusive(&s->lock);
        s->owner = me;
        locks_held++;
    }
    s->depth++;
}

/* s_enter, unless that would wait while this thread holds another stream's lock: two threads
 * doing that to each other's streams would wait for ever. Returns 0 then. */
static int s_enter_or_not(wsx_stream *s)
{
    DWORD me = GetCurrentThreadId();

    if (s->owner != me && locks_held > 0) {
        if (!TryAcquireSRWLockExclusive(&s->lock))
            return 0;
        s->owner = me;
        locks_held++;
        s->depth++;
        return 1;
    }
    s_enter(s);
    return 1;
}

/* The stream wsx_stream_open on this thread is opening, and where it put it: if it ends before
 * the call returns, *out is cleared before on_close runs (which may free the memory *out is in). */
static WSX_TLS struct opening {
    wsx_stream *s;
    wsx_stream **out;
} opening;

/* Streams opened by the callback running on this thread (or by a wsx_stream_open outside
 * callbacks, while it runs). A pinned stream can end, on_close included, but its object is not
 * reused until the pin goes: the opener may use the pointer until its callback returns, even
 * after a completion on another thread ended the stream (calls on it then fail), and never
 * reaches another connection through it. The port keeps its pinned streams in a list under
 * streams_lock (stream_release consults it), so letting go of a pin never waits for a stream's
 * lock, which another thread's callback may hold for as long as it likes. This thread's pins:
 * 8 in place, more on the heap. */
static WSX_TLS wsx_stream *pin_few[8];
static WSX_TLS wsx_stream **pin_more;
static WSX_TLS int npins, pin_cap;

static int pin(wsx_stream *s)
{
    wsx_port *p = s->port;
    wsx_stream **v = pin_more ? pin_more : pin_few;
    int cap = pin_more ? pin_cap : (int)(sizeof pin_few / sizeof pin_few[0]);
    int ok = 1;

    if (npins == cap) {
        wsx_stream **nv = malloc(2 * (size_t)cap * sizeof *nv);
        if (nv == NULL)
            return 0;
        memcpy(nv, v, (size_t)npins * sizeof *nv);
        free(pin_more);
        pin_more = v = nv;
        pin_cap = 2 * cap;
    }
    AcquireSRWLockExclusive(&p->streams_lock);
    if (p->npinned == p->pinned_cap) {
        int ncap = p->pinned_cap ? 2 * p->pinned_cap : 8;
        struct wsx__pin *np = realloc(p->pinned, (size_t)ncap * sizeof *np);
        if (np) {
            p->pinned = np;
            p->pinned_cap = ncap;
        } else {
            ok = 0;
        }
    }
    if (ok) {
        p->pinned[p->npinned].s = s;
        p->pinned[p->npinned++].ended = 0;
    }
    ReleaseSRWLockExclusive(&p->streams_lock);
    if (ok)
        v[npins++] = s;
    return ok;
}

int wsx__stream_pins(void)
{
    return npins;
}

/* Leaving the outermost level of a closed stream with nothing pending ends it. */
static void s_leave(wsx_stream *s)
{
    int release = 0;

    if (s->depth == 1 && s->closed && s->pending == 0 && !s->finished) {
        s->finished = 1;
        if (opening.s == s) {
            *opening.out = NULL;
            opening.s = NULL;
        }
        wsx_buf_put(s->rbuf);
        s->rbuf = NULL;
        if (s->wr)
            wsx__sendq_clear(&s->wr->q);
        tf_clear(s);
        if (!s->why_set) {
            memset(&s->why, 0, sizeof s->why);
            s->why.kind = s->eof ? WSX_KIND_EOF : WSX_KIND_OK;
        }
        if (s->cb->on_close) {
            /* on_close may run outside any delivery (a wsx_stream_* call from another thread):
             * a callback all the same (what it opens is pinned until it returns). */
            int mark = wsx__callback_begin(s->port);
            s->cb->on_close(s, &s->why);
            wsx__callback_end(mark);
        }
        release = 1; /* or, pinned, when the pin goes (stream_release) */
    }
    if (s->depth == 1)
        wr_put_if_idle(s);
    if (--s->depth == 0) {
        s->owner = 0;
        locks_held--;
        ReleaseSRWLockExclusive(&s->lock);
    }
    if (release)
        stream_release(s);
}

void wsx__stream_unpin_to(int mark)
{
    wsx_stream **v = pin_more ? pin_more : pin_few;

    for (int i = mark; i < npins; i++) {
        wsx_stream *s = v[i];
        wsx_port *p = s->port; /* stays: a pinned stream is not reused */
        int k, ended = 0;

        AcquireSRWLockExclusive(&p->streams_lock);
        if ((k = pin_find(p, s)) >= 0) {
            ended = p->pinned[k].ended;
            p->pinned[k] = p->pinned[--p->npinned];
        }
        if (ended) { /* it ended while pinned: its object is free now */
            InterlockedIncrement(&s->gen);
            s->u.next_free = p->free_streams;
            p->free_streams = s;
        }
        ReleaseSRWLockExclusive(&p->streams_lock);
        if (ended)
            InterlockedDecrement(&p->live_streams); /* last: the port may be freed from here */
    }
    npins = mark;
    if (npins == 0 && pin_more) {
        free(pin_more);
        pin_more = NULL;
        pin_cap = 0;
    }
}

static void set_why(wsx_stream *s, const wsx_status *st)
{
    if (!s->why_set) {
        s->why = *st;
        s->why_set = 1;
    }
}

/* Rule: cancel before closesocket. Wine does not complete a pending send to a peer that is not
 * reading on closesocket alone, and pending ops are counted so the memory outlives them. */
static void close_socket(wsx_stream *s, int abortive)
{
    if (s->closed)
        return;
    s->closed = 1;
    if (WSX_TRACING()) {
        char extra[96];
        snprintf(extra, sizeof extra, "\"how\":\"%s\",\"pending\":%u,\"why\":\"%s\"",
                 abortive ? "abortive" : "graceful", (unsigned)s->pending,
                 s->why_set ? wsx_kind_name(s->why.kind) : (s->eof ? "eof" : "ok"));
        wsx__trace_event(s->id, s->gen, "close", "sync-ok", 0, NULL, NULL, 0, extra);
    }
    if (abortive) {
        struct linger lg = {1, 0}; /* closesocket then sends RST and drops unsent data */
        setsockopt(s->sock, SOL_SOCKET, SO_LINGER, (char *)&lg, sizeof lg);
    }
    if (s->pending)
        CancelIoEx((HANDLE)s->sock, NULL);
    closesocket(s->sock);
    s->sock = INVALID_SOCKET;
}

/* Drop what waits to be sent. The buffers of a WSASend in flight stay queued: the kernel may still
 * read them until that send's completion (the stream's end frees them). */
static void drop_queue(wsx_stream *s)
{
    if (!s->writing && s->wr)
        wsx__sendq_clear(&s->wr->q);
    if (s->tf)
        wsx__sendq_clear(&s->tf->q_after);
}

static void fail(wsx_stream *s, const wsx_status *st)
{
    set_why(s, st);
    drop_queue(s);
    /* A local failure tells the peer with RST; a peer that reset needs nothing more. */
    close_socket(s, st->kind != WSX_KIND_PEER_RESET);
}

static void fail_wsa(wsx_stream *s, int wsa)
{
    wsx_status st = wsx_status_from_wsa(wsa);
    fail(s, &st);
}

/* Posted: a completion will come through the port, or (skip-on-success, or an immediate
 * failure that queues no packet) inline. Either way it is counted as pending until delivered. */
static void posted(wsx_stream *s, wsx_op *op, int rc, DWORD n)
{
    if (rc == 0) {
        if (s->skip)
            wsx__port_complete(op, n, 0, 0);
        return;
    }
    rc = WSAGetLastError();
    if (rc != WSA_IO_PENDING)
        wsx__port_complete(op, 0, 0, rc);
}

static void read_next(wsx_stream *s)
{
    WSABUF wb;
    DWORD flags = 0, n = 0;
    DWORD size = wsx_buf_pool_size(s->port->bufs);
    int rc;

    if (s->reading || s->closed || s->eof)
        return;
    /* Closing, reads are discarded: they queue nothing, so they are not held back. */
    if (!s->close_req && queued(s) + size > s->max_queued) {
        s->throttled = 1; /* backpressure: resumes when the queue drains (on_send) */
        return;
    }
    s->throttled = 0;
    s->after_wake = s->woken;
    s->woken = 0;
    if (s->close_req) {
        wb.buf = discard;
        wb.len = sizeof discard;
    } else if (s->zero && s->hot < HOT_READS && !s->after_wake) {
        wb.buf = zero_byte;
        wb.len = 0;
    } else {
        s->rbuf = wsx_buf_get(s->port->bufs);
        if (s->rbuf == NULL) {
            fail_wsa(s, WSAENOBUFS);
            return;
        }
        wb.buf = s->rbuf->data;
        wb.len = s->rbuf->cap;
    }
    if (wsx_op_begin(&s->rop) != 0)
        return;
    s->rop.port = s->port;
    s->rop.is_read = wb.len > 0; /* a zero-byte read's 0 bytes are not EOF */
    /* The read that follows a wakeup is part of that wakeup's service, not a new one. */
    s->rop.fair = s->rbuf != NULL && !s->after_wake;
    s->reading = 1;
    s->pending++;
    s->read_at = GetTickCount();
    rc = WSARecv(s->sock, &wb, 1, &n, &flags, &s->rop.ov, NULL);
    if (WSX_TRACING())
        trace_post(s, "recv", rc, n, wb.len);
    posted(s, &s->rop, rc, n); /* after the call: n is written by it */
}

static void transmit_next(wsx_stream *s)
{
    wsx__tf *t = s->tf;
    TRANSMIT_FILE_BUFFERS tb;
    const wsx_ext *ext;
    LARGE_INTEGER size;
    DWORD all, body;
    int err;

    if (wsx_op_begin(&t->op) != 0)
        return;
    t->op.port = s->port;
    if ((err = wsx_ext_get(s->sock, &ext)) != 0) {
        /* The request was accepted: it ends through on_transmit like a failed call, or the
         * sends queued behind it and a graceful close would wait for it for ever. */
        s->transmitting = 1;
        s->pending++;
        wsx__port_complete(&t->op, 0, 0, err);
        return;
    }
    t->op.ov.Offset = (DWORD)t->offset; /* TransmitFile reads the file from here */
    t->op.ov.OffsetHigh = (DWORD)(t->offset >> 32);
    tb.Head = t->head ? t->head->data : NULL;
    tb.HeadLength = t->head ? t->head->len : 0;
    tb.Tail = t->tail ? t->tail->data : NULL;
    tb.TailLength = t->tail ? t->tail->len : 0;
    body = t->len;
    if (body == 0 && GetFileSizeEx(t->file, &size) && (ULONGLONG)size.QuadPart > t->offset)
        body = (DWORD)min((ULONGLONG)size.QuadPart - t->offset, MAXDWORD); /* 0: the rest */
    all = tb.HeadLength + body + tb.TailLength;
    s->transmitting = 1;
    s->pending++;
    t->sent_at = GetTickCount();
    /* A TransmitFile that succeeds at once reports no count: it sent everything asked. */
    err = ext->TransmitFile(s->sock, t->file, t->len, 0, &t->op.ov, &tb, 0) ? 0 : -1;
    if (WSX_TRACING())
        trace_post(s, "transmitfile", err, all, all);
    if (err) {
        err = WSAGetLastError();
        if (err != WSA_IO_PENDING)
            wsx__port_complete(&t->op, 0, 0, err);
    } else if (s->skip) {
        wsx__port_complete(&t->op, all, 0, 0);
    }
}

static void write_next(wsx_stream *s)
{
    /* WSASend captures the WSABUF array before it returns, even when it pends: it may live here. */
    WSABUF wb[MAX_GATHER];
    DWORD total = 0, n = 0;
    int count, rc;

    if (s->writing || s->transmitting || s->closed)
        return;
    if (s->wr == NULL || s->wr->q.head == NULL) {
        if (TF_REQ(s))
            transmit_next(s);
        return;
    }
    count = wsx__sendq_gather(&s->wr->q, wb, MAX_GATHER, MAX_SEND, &total);
    if (count == 0 || wsx_op_begin(&s->wr->op) != 0)
        return;
    s->wr->op.port = s->port;
    s->writing = 1;
    s->pending++;
    s->wr->sent_at = GetTickCount();
    rc = WSASend(s->sock, wb, (DWORD)count, &n, 0, &s->wr->op.ov, NULL);
    if (WSX_TRACING())
        trace_post(s, "send", rc, n, total);
    posted(s, &s->wr->op, rc, n);
}

/* Half-close once the queue is out; close once both directions are done or a close was asked. */
static void check_done(wsx_stream *s)
{
    if (s->closed || (s->wr && s->wr->q.head) || s->writing || TF_REQ(s))
        return;
    if (s->shut_req && !s->shut_done && s->eof && !s->cb->on_release) {
        /* The peer is done and so are we: closesocket sends the FIN, a shutdown first would only
         * cost a call (two wineserver round trips under Wine). */
        close_socket(s, 0);
        return;
    }
    if (s->shut_req && !s->shut_done) {
        int rc = shutdown(s->sock, SD_SEND);
        if (WSX_TRACING()) {
            wsx_status st = wsx_status_from_wsa(rc ? WSAGetLastError() : 0);
            wsx__trace_event(s->id, s->gen, "shutdown", rc ? "sync-error" : "sync-ok", 0,
                             rc ? &st : NULL, NULL, 0, NULL);
        }
        s->shut_done = 1;
    }
    if (s->eof && s->shut_done && !s->why_set && s->pending == 0 && s->cb->on_release) {
        SOCKET sock = s->sock;
        int mark;
        /* An orderly end with nothing in flight: the socket can serve again. */
        if (WSX_TRACING())
            wsx__trace_event(s->id, s->gen, "close", "sync-ok", 0, NULL, NULL, 0,
                             "\"how\":\"release\",\"pending\":0,\"why\":\"eof\"");
        s->closed = 1;
        s->sock = INVALID_SOCKET;
        mark = wsx__callback_begin(s->port);
        wsx__conn_handover(sock, s->id);
        s->cb->on_release(s, sock);
        wsx__conn_handover(INVALID_SOCKET, 0);
        wsx__callback_end(mark);
        return;
    }
    if (s->eof && s->shut_done) {
        close_socket(s, 0);
    } else if (s->close_req && s->shut_done) {
        /* Our FIN is out: linger, reading, until the peer's FIN (or LINGER_MS, at the sweep). */
        if (!s->lingering) {
            s->lingering = 1;
            s->last_data = GetTickCount(); /* the linger's start: no data is delivered now */
        }
        read_next(s);
        if (!s->reading)
            close_socket(s, 0); /* no read to linger on (it failed): close now */
    }
}

static void got_eof(wsx_stream *s)
{
    s->eof = 1;
    if (s->cb->on_eof)
        s->cb->on_eof(s);
    else
        s->shut_req = 1;
}

static void got_data(wsx_stream *s, wsx_buf *b)
{
    s->last_data = GetTickCount();
    s->bytes_in += b->len - b->off;
    s->cb->on_data(s, b);
}

/* Our own close turned this completion into an error: it is a local abort, whatever the code
 * (a reset and a local disconnect are both 64 to GetQueuedCompletionStatus). The caller runs
 * on_complete (notify) once it has taken what it needs from the op and settled the queue: the
 * callback may post the op again (a close's discard read) or send on (a write pump), and must
 * see the stream as it is after this completion. */
static wsx_status classify(wsx_stream *s, wsx_op *op, const wsx_status *st)
{
    wsx_status r = *st;

    if (!op->completed_inline)
        s->streak = 0;
    s->pending--;
    if (op == &s->rop)
        s->reading = 0;
    else if (op->kind == WSX_OP_SEND)
        s->writing = 0;
    else
        s->transmitting = 0;
    if (r.wsa != 0 && s->closed)
        r.kind = WSX_KIND_ABORTED; /* we closed the socket under it, whatever the code says */
    if (WSX_TRACING())
        wsx__trace_event(s->id, s->gen, wsx_op_kind_name((wsx_op_kind)op->kind), "complete",
                         r.bytes, &r, NULL, 0, op->completed_inline ? "\"inline\":true" : NULL);
    return r;
}

static void notify(wsx_stream *s, wsx_op_kind kind, const wsx_status *r)
{
    if (s->cb->on_complete)
        s->cb->on_complete(s, kind, r);
}

/* Heat (see HOT_MS): a read that found data soon after its post counts towards a full read. */
static void note_heat(wsx_stream *s, int completed_inline, DWORD read_at)
{
    if (completed_inline || GetTickCount() - read_at <= HOT_MS) {
        if (s->hot < HOT_READS)
            s->hot++;
    } else if (s->hot < HOT_READS) {
        s->hot = 0; /* not two in a row; a hot stream cools only by being parked */
    }
}

static void on_recv(wsx_op *op, const wsx_status *st)
{
    wsx_stream *s = op->owner;
    wsx_status r;
    wsx_buf *b;
    int parked, is_read = op->is_read, completed_inline = op->completed_inline;
    DWORD read_at;

    s_enter(s);
    r = classify(s, op, st);
    b = s->rbuf;
    s->rbuf = NULL;
    read_at = s->read_at;
    notify(s, WSX_OP_RECV, &r); /* it may post the read again: what it was is kept above */
    /* Our sweep's cancel took the read back: not an error, the stream reads on, cold. A read that
     * completed before the cancel reached it is delivered as usual. */
    parked = s->parking && r.wsa == WSA_OPERATION_ABORTED && !s->closed;
    s->parking = 0;
    if (parked) {
        wsx_buf_put(b);
        s->hot = 0;
    } else if (s->closed) {
        wsx_buf_put(b);
    } else if (r.wsa != 0) {
        wsx_buf_put(b);
        fail(s, &r);
    } else if (s->close_req) {
        /* Closing: what still arrives is read (unread data would turn our close into a RST)
         * and not delivered; the peer's FIN ends the linger. */
        if (b == NULL && !is_read)
            s->woken = 1; /* a zero-byte read posted before the close */
        else if (r.bytes == 0)
            s->eof = 1;
        wsx_buf_put(b);
    } else if (b == NULL) {
        /* A zero-byte read completed: data (or FIN) is there. The full read posted next takes it
         * (it completes at once; with skip-on-success, inline), one buffer per wakeup: reading on
         * while data kept coming starved the other connections (bench: stream x100). */
        note_heat(s, completed_inline, read_at);
        s->woken = 1;
    } else if (r.bytes == 0) {
        wsx_buf_put(b);
        got_eof(s);
    } else {
        if (!s->after_wake)
            note_heat(s, completed_inline, read_at); /* part of the wakeup it follows */
        b->len = r.bytes;
        got_data(s, b);
    }
    read_next(s);
    check_done(s);
    s_leave(s);
}

/* A send (or TransmitFile) in flight for the port's send timeout or longer: the peer stopped
 * reading. */
static int send_stuck(const wsx_stream *s, DWORD now, DWORD limit)
{
    return limit != INFINITE && ((s->writing && now - s->wr->sent_at >= limit) ||
                                 (s->transmitting && now - s->tf->sent_at >= limit));
}

/* Park the hot streams of port p whose read has waited park_ms or more (see HOT_MS), and reset
 * those whose send is stuck. Streams are never freed while their port lives, so the list can be
 * walked; a busy stream is skipped. */
void wsx__stream_sweep(wsx_port *p, DWORD park_ms)
{
    DWORD now = GetTickCount();
    wsx_stream *s;

    AcquireSRWLockShared(&p->streams_lock);
    s = p->all_streams;
    ReleaseSRWLockShared(&p->streams_lock);
    for (; s; s = s->next_all) {
        if (!TryAcquireSRWLockExclusive(&s->lock))
            continue;
        if (s->zero && s->reading && s->rbuf && !s->parking && !s->closed && !s->close_req &&
            now - s->read_at >= park_ms) {
            s->parking = 1;
            if (WSX_TRACING())
                wsx__trace_event(s->id, s->gen, "recv", "park", 0, NULL, NULL, 0, NULL);
            if (!CancelIoEx((HANDLE)s->sock, &s->rop.ov))
                s->parking = 0; /* it has completed already: its completion is on its way */
        }
        if (s->lingering && !s->closed && s->pending > 0 && now - s->last_data >= LINGER_MS)
            close_socket(s, 0); /* the peer sent no FIN in time; its read's completion ends it */
        if (!s->closed && send_stuck(s, now, p->send_timeout)) {
            wsx_status st = wsx_status_from_wsa(WSAETIMEDOUT);
            if (WSX_TRACING())
                wsx__trace_event(s->id, s->gen, s->writing ? "send" : "transmitfile", "timeout", 0,
                                 &st, NULL, 0, NULL);
            set_why(s, &st);
            drop_queue(s);
            close_socket(s, 1); /* the completions that follow end the stream */
        }
        ReleaseSRWLockExclusive(&s->lock);
    }
    wr_trim(p, WR_KEEP);
}

static void on_send(wsx_op *op, const wsx_status *st)
{
    wsx_stream *s = op->owner;
    wsx_status r;

    s_enter(s);
    r = classify(s, op, st);
    if (!s->closed && r.wsa == 0) {
        s->bytes_out += r.bytes;
        if (r.bytes > 0 && !s->lingering)
            s->last_data = GetTickCount();      /* the peer is reading: not idle */
        wsx__sendq_advance(&s->wr->q, r.bytes); /* held: a send was in flight */
    }
    notify(s, WSX_OP_SEND, &r); /* a send from it goes on from where this one ended */
    if (!s->closed) {
        if (r.wsa != 0) {
            fail(s, &r);
        } else {
            write_next(s);
            if (s->throttled)
                read_next(s);
            check_done(s);
        }
    }
    s_leave(s);
}

static void tf_clear(wsx_stream *s)
{
    if (s->tf == NULL)
        return;
    wsx_buf_put(s->tf->head);
    wsx_buf_put(s->tf->tail);
    s->tf->head = s->tf->tail = NULL;
    s->tf->req = 0;
}

static void on_transmit(wsx_op *op, const wsx_status *st)
{
    wsx_stream *s = op->owner;
    wsx_status r;

    s_enter(s);
    r = classify(s, op, st);
    tf_clear(s);
    /* What was queued behind the file goes next. */
    if (s->tf->q_after.head) {
        wsx__sendq *qa = &s->tf->q_after;
        wsx__wr *w = wr_get(s);
        if (w == NULL) {
            wsx__sendq_clear(qa);
            if (!s->closed)
                fail_wsa(s, WSAENOBUFS);
        } else {
            if (w->q.tail)
                w->q.tail->next = qa->head;
            else
                w->q.head = qa->head;
            w->q.tail = qa->tail;
            w->q.queued += qa->queued;
            memset(qa, 0, sizeof *qa);
        }
    }
    if (!s->closed && r.wsa == 0)
        s->bytes_out += r.bytes;
    notify(s, WSX_OP_TRANSMITFILE, &r); /* the file is done: it may send the next one */
    if (!s->closed) {
        if (r.wsa != 0) {
            fail(s, &r);
        } else {
            write_next(s);
            if (s->throttled)
                read_next(s);
            check_done(s);
        }
    }
    s_leave(s);
}

static void track_peak(wsx_stream *s)
{
    if (queued(s) > s->peak_queued)
        s->peak_queued = queued(s);
}

int wsx_stream_open(wsx_port *port, SOCKET sock, const wsx_stream_opts *opts,
                    const wsx_stream_callbacks *cb, void *user, const void *initial, DWORD len,
                    wsx_stream **out)
{
    const wsx_stream_callbacks *pcb;
    wsx_stream *s;
    size_t mq;
    int err, skip = 0, scope, mark;
    struct opening outer;

    if (out)
        *out = NULL;
    if (opts && opts->ref) {
        opts->ref->s = NULL;
        opts->ref->gen = 0;
    }
    if (port == NULL || sock == INVALID_SOCKET || cb == NULL || cb->on_data == NULL ||
        out == NULL || (initial == NULL && len > 0) || len > wsx_buf_pool_size(port->bufs)) {
        if (sock != INVALID_SOCKET)
            closesocket(sock);
        return WSAEINVAL;
    }
    pcb = cbs_intern(port, cb);
    s = pcb ? stream_alloc(port) : NULL;
    if (s == NULL) {
        closesocket(sock);
        return WSAENOBUFS;
    }
    if (opts && opts->associated) {
        skip = opts->skip_on_success && SetFileCompletionNotificationModes(
                                            (HANDLE)sock, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                              FILE_SKIP_SET_EVENT_ON_HANDLE);
        err = 0;
    } else {
        err = wsx_port_associate(port, sock, opts && opts->skip_on_success, &skip);
    }
    if (err) {
        closesocket(sock);
        s->port = port; /* a new object has none yet */
        /* A free object must look finished to wsx_port_close_streams and the sweep. */
        s->closed = s->finished = 1;
        stream_release(s);
        return err;
    }
    /* Outside callbacks, the open is a delivery scope of its own: on_data for `initial` runs as
     * a callback, and what it sends completes after it returns, not inside it. */
    scope = wsx__port_scope_begin();
    mark = wsx__stream_pins();
    s_enter(s);
    s->port = port;
    s->sock = sock;
    s->id = wsx__conn_take(sock);
    if (s->id == 0)
        s->id = wsx__conn_id();
    s->streak = 0;
    s->pending = 0;
    s->zero = opts && opts->zero_byte_reads;
    s->skip = skip != 0;
    s->eof = s->shut_req = s->shut_done = s->close_req = s->closed = 0;
    s->hot = s->parking = s->after_wake = 0;
    /* Bytes that came with the accept are a wakeup: the client is active, read on with a buffer
     * (a zero-byte read first would cost a round trip more for its next bytes or its FIN). */
    s->woken = len > 0;
    s->last_data = GetTickCount();
    s->reading = s->writing = s->transmitting = 0;
    s->finished = s->why_set = s->throttled = s->lingering = 0;
    s->rbuf = NULL;
    tf_clear(s); /* kept by a reused stream object, empty since its last stream finished */
    mq = opts && opts->max_queued ? opts->max_queued : 4 * (size_t)wsx_buf_pool_size(port->bufs);
    if (mq < wsx_buf_pool_size(port->bufs))
        mq = wsx_buf_pool_size(port->bufs);               /* room for one read, or none would run */
    s->max_queued = mq < MAXDWORD ? (DWORD)mq : MAXDWORD; /* 4 GiB queued per stream is no limit */
    s->peak_queued = 0;
    s->bytes_in = s->bytes_out = 0;
    s->cb = pcb;
    s->u.user = user;
    wsx_op_init(&s->rop, WSX_OP_RECV, on_recv, s, &s->gen);
    s->rop.streak = &s->streak;
    *out = s;
    if (opts && opts->ref) {
        opts->ref->s = s;
        opts->ref->gen = s->gen;
    }
    outer = opening; /* a callback of this open may open another stream */
    opening.s = s;
    opening.out = out;
    if (!pin(s))
        fail_wsa(s, WSAENOBUFS);
    else if (len > 0) {
        wsx_buf *b = wsx_buf_get(port->bufs);
        if (b == NULL) {
            fail_wsa(s, WSAENOBUFS);
        } else {
            int frame = wsx__callback_begin(port);
            memcpy(b->data, initial, len);
            b->len = len;
            got_data(s, b);
            wsx__callback_end(frame);
        }
    }
    read_next(s);
    s_leave(s);
    /* Outside callbacks: what completed at once is delivered now (it may end the stream: a FIN
     * or RST found at once), and the pins of this call go. In a callback, delivered or not
     * (on_close from a call outside callbacks is one), they go when it returns. */
    wsx__port_scope_end(scope);
    if (!wsx__in_callback())
        wsx__stream_unpin_to(mark);
    opening = outer;
    return 0;
}

static int can_send(wsx_stream *s)
{
    return !s->closed && !s->shut_req && !s->close_req;
}

int wsx_stream_send_buf(wsx_stream *s, wsx_buf *b)
{
    int err = 0;

    if (s == NULL || b == NULL) {
        wsx_buf_put(b);
        return WSAEINVAL;
    }
    s_enter(s);
    if (!can_send(s)) {
        wsx_buf_put(b);
        err = WSAESHUTDOWN;
    } else if (b->len == b->off) {
        wsx_buf_put(b);
    } else if (!TF_REQ(s) && wr_get(s) == NULL) {
        wsx_buf_put(b);
        err = WSAENOBUFS;
    } else {
        wsx__sendq_push(TF_REQ(s) ? &s->tf->q_after : &s->wr->q, b);
        track_peak(s);
        write_next(s);
    }
    s_leave(s);
    wsx__port_flush();
    return err;
}

/* Queue a copy of data; with want_gen (a reference's), only while s is still that connection. */
static int send_copy(wsx_stream *s, const LONG *want_gen, const void *data, size_t len)
{
    wsx__sendq chunks;
    const char *p = data;
    int err = 0;

    memset(&chunks, 0, sizeof chunks);
    /* Take every buffer first, so a failure queues nothing. */
    while (len > 0) {
        wsx_buf *b = wsx_buf_get(s->port->bufs);
        if (b == NULL) {
            wsx__sendq_clear(&chunks);
            return WSAENOBUFS;
        }
        b->len = len < b->cap ? (DWORD)len : b->cap;
        memcpy(b->data, p, b->len);
        p += b->len;
        len -= b->len;
        wsx__sendq_push(&chunks, b);
    }
    /* Held, the stream cannot finish and be reused under us (wsx_stream_ref_close). A reference
     * send does not wait from a callback; a plain one follows the rule in stream.h. */
    if (want_gen ? !s_enter_or_not(s) : (s_enter(s), 0)) {
        wsx__sendq_clear(&chunks);
        return WSAEWOULDBLOCK; /* its callback runs on another thread, and we are in one */
    }
    if (want_gen && (s->gen != *want_gen || s->closed || s->finished)) {
        wsx__sendq_clear(&chunks);
        err = WSAENOTCONN;
    } else if (!can_send(s)) {
        wsx__sendq_clear(&chunks);
        err = WSAESHUTDOWN;
    } else if (chunks.head && !TF_REQ(s) && wr_get(s) == NULL) {
        wsx__sendq_clear(&chunks);
        err = WSAENOBUFS;
    } else if (chunks.head) {
        wsx__sendq *q = TF_REQ(s) ? &s->tf->q_after : &s->wr->q;
        if (chunks.head == chunks.tail) {
            wsx__sendq_push(q, chunks.head); /* a small message may join the last buffer */
        } else {
            if (q->tail)
                q->tail->next = chunks.head;
            else
                q->head = chunks.head;
            q->tail = chunks.tail;
            q->queued += chunks.queued;
        }
        track_peak(s);
        write_next(s);
    }
    s_leave(s);
    wsx__port_flush();
    return err;
}

int wsx_stream_send(wsx_stream *s, const void *data, size_t len)
{
    if (s == NULL || (data == NULL && len > 0))
        return WSAEINVAL;
    return send_copy(s, NULL, data, len);
}

int wsx_stream_ref_send(wsx_stream_ref ref, const void *data, size_t len)
{
    if (ref.s == NULL || (data == NULL && len > 0))
        return WSAEINVAL;
    return send_copy(ref.s, &ref.gen, data, len);
}

static wsx_buf *copy_to_buf(wsx_port *p, const void *data, DWORD len)
{
    wsx_buf *b;

    if (len == 0)
        return NULL;
    b = wsx_buf_get(p->bufs);
    if (b) {
        memcpy(b->data, data, len);
        b->len = len;
    }
    return b;
}

int wsx_stream_transmit_file(wsx_stream *s, HANDLE file, ULONGLONG offset, DWORD len,
                             const void *head, DWORD head_len, const void *tail, DWORD tail_len)
{
    DWORD cap;
    int err = 0;

    if (s == NULL || file == NULL || file == INVALID_HANDLE_VALUE || (head == NULL && head_len) ||
        (tail == NULL && tail_len))
        return WSAEINVAL;
    cap = wsx_buf_pool_size(s->port->bufs);
    if (head_len > cap || tail_len > cap)
        return WSAEINVAL;
    s_enter(s);
    if (!can_send(s)) {
        err = WSAESHUTDOWN;
    } else if (TF_REQ(s)) {
        err = WSAEALREADY;
    } else if (s->tf == NULL && (s->tf = calloc(1, sizeof *s->tf)) == NULL) {
        err = WSAENOBUFS;
    } else {
        wsx__tf *t = s->tf;
        if (t->op.fn == NULL)
            wsx_op_init(&t->op, WSX_OP_TRANSMITFILE, on_transmit, s, &s->gen);
        t->head = copy_to_buf(s->port, head, head_len);
        t->tail = copy_to_buf(s->port, tail, tail_len);
        if ((head_len && !t->head) || (tail_len && !t->tail)) {
            tf_clear(s);
            err = WSAENOBUFS;
        } else {
            t->req = 1;
            t->file = file;
            t->offset = offset;
            t->len = len;
            write_next(s);
        }
    }
    s_leave(s);
    wsx__port_flush();
    return err;
}

int wsx_stream_shutdown(wsx_stream *s)
{
    int err = 0;

    if (s == NULL)
        return WSAEINVAL;
    s_enter(s);
    if (s->closed)
        err = WSAENOTCONN;
    else
        s->shut_req = 1;
    check_done(s);
    s_leave(s);
    wsx__port_flush();
    return err;
}

int wsx_stream_close(wsx_stream *s)
{
    int err = 0;

    if (s == NULL)
        return WSAEINVAL;
    s_enter(s);
    if (s->closed) {
        err = WSAENOTCONN;
    } else {
        s->close_req = 1;
        s->shut_req = 1;
        check_done(s); /* the read stays: what the peer still sends is read and dropped */
    }
    s_leave(s);
    wsx__port_flush();
    return err;
}

int wsx_stream_reset(wsx_stream *s)
{
    int err = 0;

    if (s == NULL)
        return WSAEINVAL;
    s_enter(s);
    if (s->closed) {
        err = WSAENOTCONN;
    } else {
        wsx_status st = wsx_status_from_wsa(WSA_OPERATION_ABORTED);
        set_why(s, &st);
        drop_queue(s);
        close_socket(s, 1);
    }
    s_leave(s);
    wsx__port_flush();
    return err;
}

void *wsx_stream_user(const wsx_stream *s)
{
    return s ? s->u.user : NULL;
}

SOCKET wsx_stream_socket(const wsx_stream *s)
{
    return s ? s->sock : INVALID_SOCKET;
}

wsx_port *wsx_stream_port(const wsx_stream *s)
{
    return s ? s->port : NULL;
}

void wsx_stream_get_info(wsx_stream *s, wsx_stream_info *out)
{
    int mine;

    if (out == NULL)
        return;
    if (s == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    mine = s->owner == GetCurrentThreadId(); /* called from one of its callbacks */
    if (!mine)
        AcquireSRWLockShared(&s->lock);
    out->queued = queued(s);
    out->max_queued = s->max_queued;
    out->peak_queued = s->peak_queued;
    out->pending = s->pending;
    out->skip_on_success = s->skip;
    out->reading_paused = s->throttled;
    out->bytes_in = s->bytes_in;
    out->bytes_out = s->bytes_out;
    if (!mine)
        ReleaseSRWLockShared(&s->lock);
}

static int close_how(wsx_stream *s, wsx_close_how how)
{
    if (how == WSX_CLOSE_RESET)
        return wsx_stream_reset(s);
    if (how == WSX_CLOSE_SHUTDOWN)
        return wsx_stream_shutdown(s);
    return wsx_stream_close(s);
}

/* Data that reached the stream's socket but not the stream: a read the kernel has completed
 * whose completion has not been delivered yet (it waits in a busy port: "quiet" by the clock),
 * or bytes that a pending zero-byte read has not reported. Under the stream's lock. */
static int data_on_the_way(wsx_stream *s)
{
    u_long n = 0;

    if (s->reading && HasOverlappedIoCompleted(&s->rop.ov))
        return 1;
    return ioctlsocket(s->sock, FIONREAD, &n) == 0 && n > 0;
}

int wsx_port_close_streams(wsx_port *p, DWORD idle_ms, wsx_close_how how)
{
    wsx_stream *s;
    int asked = 0;

    if (p == NULL)
        return 0;
    AcquireSRWLockShared(&p->streams_lock);
    s = p->all_streams;
    ReleaseSRWLockShared(&p->streams_lock);
    /* Streams are never freed while the port lives: the list can be walked without its lock. */
    for (; s; s = s->next_all) {
        int err = WSAENOTCONN;

        s_enter(s);
        /* Idle: nothing received and nothing sent for idle_ms, nothing waiting to be sent (a
         * stream whose peer is slow to read is the send timeout's, not idle: closing it would
         * drop what the peer sends meanwhile), and no data on its way to it. */
        if (!s->closed && !s->finished && s->port == p &&
            (!s->close_req || how == WSX_CLOSE_RESET) &&
            !(s->shut_req && how == WSX_CLOSE_SHUTDOWN) &&
            (idle_ms == 0 ||
             (GetTickCount() - s->last_data >= idle_ms && queued(s) == 0 && !s->writing &&
              !s->transmitting && !s->throttled && !data_on_the_way(s)))) {
            err = close_how(s, how);
        }
        s_leave(s);
        asked += err == 0;
    }
    wsx__port_flush();
    return asked;
}

wsx_stream_ref wsx_stream_get_ref(wsx_stream *s)
{
    wsx_stream_ref r;
    r.s = s;
    r.gen = s ? s->gen : 0;
    return r;
}

int wsx_stream_ref_close(wsx_stream_ref ref, wsx_close_how how)
{
    wsx_stream *s = ref.s;
    int err = WSAENOTCONN;

    if (s == NULL)
        return WSAEINVAL;
    /* The lock outlives every generation; holding it, the stream cannot finish and be reused
     * under us (it finishes only when the outermost holder leaves). From a callback, no wait. */
    if (!s_enter_or_not(s))
        return WSAEWOULDBLOCK;
    if (s->gen == ref.gen && !s->closed && !s->finished) {
        err = close_how(s, how);
    }
    s_leave(s);
    wsx__port_flush();
    return err;
}
