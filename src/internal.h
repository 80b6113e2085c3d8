/* Declarations shared between wsx's sources and its unit tests; not installed. */
#ifndef WSX_INTERNAL_H
#define WSX_INTERNAL_H

#include "wsx/wsx.h"

#if defined(_MSC_VER)
#define WSX_TLS __declspec(thread)
#else
#define WSX_TLS _Thread_local
#endif

#define WSX_MAX_WORKERS 64
#define WSX_KEY_IO ((ULONG_PTR)0)

struct wsx_stream;

struct wsx_port {
    HANDLE iocp;
    HANDLE threads[WSX_MAX_WORKERS];
    DWORD thread_ids[WSX_MAX_WORKERS];
    int nthreads;
    unsigned inline_cap;
    ULONG batch;           /* entries asked of one GetQueuedCompletionStatusEx */
    DWORD send_timeout;    /* ms; INFINITE: none */
    DWORD connect_timeout; /* ms; INFINITE: none */
    SRWLOCK connects_lock;
    struct wsx__connect *connects; /* in flight, for the connect timeout (connect.c) */
    wsx_buf_pool *bufs;
    /* Streams are recycled, never freed while the port lives: a late completion can always read
     * its owner's generation. */
    SRWLOCK streams_lock;
    struct wsx_stream *free_streams;
    struct wsx_stream *all_streams;
    struct wsx__slab *slabs; /* the heap blocks the stream objects live in */
    /* Streams pinned by their openers' callbacks (stream.c), and whether each ended meanwhile:
     * its object goes back to the free list when the pin goes. Under streams_lock. */
    struct wsx__pin {
        struct wsx_stream *s;
        int ended;
    } * pinned;
    int npinned, pinned_cap;
    volatile LONG live_streams;
    /* Listeners open or not yet freed, and connects in flight: their completions and timers use
     * the port, so wsx_port_destroy waits for them as for streams. */
    volatile LONG live_others;
    volatile LONG polling; /* threads in wsx_port_poll on it */
    SLIST_HEADER free_wr;  /* send states of streams that have nothing to send (stream.c) */
    SRWLOCK cbs_lock;
    struct wsx__cbs *cbs; /* one copy of each distinct callbacks struct its streams use */
    SRWLOCK sweep_lock;
    volatile LONG last_sweep; /* GetTickCount of the last sweep */
    volatile LONG64 dequeued, inline_done, requeued, stale_dropped;
};

/* Complete a posted op without a packet: it succeeded at once under skip-on-success, or the call
 * failed at once (sync_wsa != 0). Delivery happens at the next wsx__port_flush on this thread,
 * never inside the caller; past the owner's inline cap the completion goes through the port. */
void wsx__port_complete(wsx_op *op, DWORD bytes, LONG status, int sync_wsa);

/* A stream's send queue: buffers in order, data[off..len) of each still to send. */
typedef struct wsx__sendq {
    wsx_buf *head, *tail;
    size_t queued;
} wsx__sendq;

/* Append b; a small b is copied into the last buffer's spare room instead (and put back). */
void wsx__sendq_push(wsx__sendq *q, wsx_buf *b);
/* Fill up to max WSABUFs, max_bytes in all, from the front of the queue; returns how many,
 * *total their bytes. */
int wsx__sendq_gather(const wsx__sendq *q, WSABUF *wb, int max, DWORD max_bytes, DWORD *total);
/* n bytes were sent: finished buffers go back to their pool, a partial one keeps its rest. */
void wsx__sendq_advance(wsx__sendq *q, DWORD n);
void wsx__sendq_clear(wsx__sendq *q);

/* Frees the port's stream objects, send states and callbacks copies (port destroy). */
void wsx__stream_free_all(struct wsx_port *p);
/* Trim the pool to its peak use since the last call, plus a margin (buf.c). */
size_t wsx__buf_pool_sweep(wsx_buf_pool *p);
/* Park hot streams whose full read has waited park_ms or more; give the heap the free send
 * states beyond a few hundred (stream.c). */
void wsx__stream_sweep(struct wsx_port *p, DWORD park_ms);
/* Cancel the port's connects in flight for its connect timeout or longer (connect.c). */
void wsx__connect_sweep(struct wsx_port *p);
/* Pins of the streams opened in callbacks on this thread (stream.c): deliver() lets go of those
 * its callback made when it returns. */
int wsx__stream_pins(void);
void wsx__stream_unpin_to(int mark);
/* A user callback of port p runs on this thread: begin before it, end (with what begin returned)
 * after it. Every callback runs inside such a frame, delivered or not (on_close from a call made
 * outside callbacks, on_data for an open's initial bytes, on_release): the port may not be polled
 * or destroyed from it, and the streams it opens stay pinned until it returns. */
int wsx__callback_begin(struct wsx_port *p);
void wsx__callback_end(int pins);
/* Whether a callback frame is open on this thread. */
int wsx__in_callback(void);
/* A scope in which callbacks run as in a delivery: what completes inline waits for its end
 * (wsx_stream_open outside callbacks: its on_data must not see completions nested in it).
 * begin returns whether this call opened the scope; end closes it (if so) and delivers. */
int wsx__port_scope_begin(void);
void wsx__port_scope_end(int began);

/* Trace (trace.c). Callers test WSX_TRACING() first: one predictable branch when off. */
extern volatile LONG wsx__trace_on;
#define WSX_TRACING() (wsx__trace_on != 0)
void wsx__trace_event(unsigned long long conn, LONG gen, const char *op, const char *phase,
                      DWORD bytes, const wsx_status *st, const struct sockaddr *peer, int peer_len,
                      const char *extra);
/* The phase of a post from the call's result: sync-ok, pending or sync-error (with *st). */
const char *wsx__trace_post_phase(int rc, int err, wsx_status *st);
/* Connection ids (stream.c). An accept's or connect's completion takes one for its trace line
 * and hands it, for the length of its callback, to the stream that callback opens on `sock`; a
 * stream hands its own to on_release, for the DisconnectEx that recycles the socket. One
 * connection's story has one id from its first line to its last. take: the id handed over with
 * `sock` on this thread (once), else 0. */
unsigned long long wsx__conn_id(void);
void wsx__conn_handover(SOCKET sock, unsigned long long id);
unsigned long long wsx__conn_take(SOCKET sock);
void wsx__trace_from_env(void);

/* Running under Wine (ntdll exports wine_get_version): for the few costs that differ. */
int wsx__on_wine(void);

/* From the op's callback, as the first thing it does: deliver this completion again on port `to`
 * instead (its status stays in op->ov; bytes as delivered). Returns 0 if the packet could not be
 * posted: the callback then goes on here. */
int wsx__port_forward(wsx_op *op, struct wsx_port *to, DWORD bytes);

/* Deliver this thread's inline completions, unless a delivery is already running on it. */
void wsx__port_flush(void);

/* Fill `out` by loading each function of `guids` (WSX_EXT_COUNT of them, in wsx_ext_id order)
 * on socket `s`. Absent ones get their stub. Returns 0 or the WSAIoctl error of the first that
 * failed (the table is usable either way). Exposed so tests can ask for a missing function. */
int wsx__ext_load(SOCKET s, const GUID *guids, wsx_ext *out);
/* The first error of a load that is the socket's, not the provider's (0: none): such a table is
 * not cached. */
int wsx__ext_socket_error(const wsx_ext *e);

extern const GUID wsx__ext_guids[WSX_EXT_COUNT];

#endif
