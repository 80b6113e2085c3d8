/* The completion port: association, worker threads, batch dequeue, inline completions, stop.
 *
 * Windows rules encoded here:
 * - A socket is associated with one port for its life (CreateIoCompletionPort).
 * - With FILE_SKIP_COMPLETION_PORT_ON_SUCCESS, an operation that succeeds at once queues no
 *   packet: the caller must complete it itself. wsx completes it through the same handler a
 *   dequeued one reaches, after the posting call has returned (never re-entrantly), and after
 *   `inline_cap` inline completions in a row for one owner it requeues the next through the port
 *   so that one busy connection cannot starve the others.
 * - Closing a port handle does not wake threads blocked on it under Wine: workers are stopped with
 *   posted sentinel packets, and a worker that dequeues several in one batch re-posts the extras.
 */
#ifndef WSX_PORT_H
#define WSX_PORT_H

#include "wsx/common.h"
#include "wsx/buf.h"
#include "wsx/op.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wsx_port wsx_port;

typedef struct wsx_port_opts {
    /* Inline completions in a row per owner before a requeue; 0 = 4 (8 times that for the small
     * exchanges of a stream alone on its port). A read of under 4 KiB that completes at once after
     * its stream was served inline is requeued at once when the port has other streams
     * (request/response fairness, docs/semantics.md P12). */
    unsigned inline_cap;
    DWORD buffer_size;  /* size of the port's buffer pool (streams read into it); 0 = 65536 */
    size_t max_buffers; /* bound of that pool; 0 = no bound */
    /* Entries asked of one GetQueuedCompletionStatusEx (1..64); 0 = 64 on Windows, 1 under Wine:
     * Wine takes each entry with its own wineserver round trip and one more to find the queue
     * empty, so a batch only adds a call there. */
    unsigned batch;
    /* A send or TransmitFile still in flight after this long resets its connection (on_close's
     * why: WSAETIMEDOUT), checked every 250 ms: a peer that stops reading must not hold a
     * connection and its queued buffers for ever, closing or not. A WSASend carries at most
     * 1 MiB, so a peer that takes 1 MiB per timeout keeps its connection however much is
     * queued; a TransmitFile is one operation, so the timeout must cover the whole file at the
     * slowest rate you accept. 0 = 60000; INFINITE = none. */
    DWORD send_timeout_ms;
    /* A wsx_connect not done after this long is cancelled: its callback gets WSAETIMEDOUT (with
     * the cancel's ntstatus and win32 beside it).
     * Checked every 250 ms. 0 or INFINITE = none: the system gives up by itself (after its SYN
     * retries: about 21 s on Windows, about 2 minutes on Linux, so under Wine). */
    DWORD connect_timeout_ms;
} wsx_port_opts;

typedef struct wsx_port_stats {
    LONG64 dequeued;      /* completions taken from the port (one a spread listener hands to
                             another port counts there) */
    LONG64 inline_done;   /* completed inline (skip-on-success) */
    LONG64 requeued;      /* inline completions sent through the port by the cap */
    LONG64 stale_dropped; /* completions whose owner had moved to a new generation */
} wsx_port_stats;

/* opts may be NULL. Returns 0, WSAEINVAL (a buffer size wsx_buf_pool_create refuses),
 * WSAENOBUFS or the CreateIoCompletionPort error (mapped). */
WSX_API int wsx_port_create(wsx_port **out, const wsx_port_opts *opts);

/* Stops the workers if running, then frees the port. Streams must be closed first (their
 * on_close has run), listeners closed and their last completions dequeued, connects completed
 * (their callback has run), and the buffers of its pool the program holds given back
 * (wsx_buf_put); returns WSAEINPROGRESS, freeing nothing, while any is left or another thread is
 * in wsx_port_poll on it (poll or let the workers run, and retry), and WSAEINVAL, freeing
 * nothing, when called from one of the port's workers or callbacks, or from any callback while
 * this thread is polling it. A poll that another thread starts while destroy runs is the
 * program's error, as any use of a port being freed. */
WSX_API int wsx_port_destroy(wsx_port *port);

/* Associate a socket. skip_on_success: also set FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
 * FILE_SKIP_SET_EVENT_ON_HANDLE; *skip_set (may be NULL) tells whether it took effect (a provider
 * that is not IFS-based refuses it; the socket then works through the port). */
WSX_API int wsx_port_associate(wsx_port *port, SOCKET s, int skip_on_success, int *skip_set);

/* Start n worker threads (1..64) that run the port until wsx_port_stop. */
WSX_API int wsx_port_start(wsx_port *port, int n);

/* Post one sentinel per worker and join them all; completions still queued stay queued.
 * Returns 0, or WSAEINVAL if called from a worker. */
WSX_API int wsx_port_stop(wsx_port *port);

/* Run one batch on the calling thread (for single-threaded use and tests): waits up to timeout_ms
 * for completions and handles them. Returns 0, WSAETIMEDOUT, or WSAESHUTDOWN if it took a stop
 * sentinel (wsx_port_stop's, for a worker: the poll puts it back for one). A callback may poll
 * another port: that poll delivers only what it takes from that port; what the calling round
 * completed inline or requeued waits for that round, so a stream's callbacks never run inside
 * its own. A callback of this port (on this thread; on_close, on_release and on_data for an
 * open's initial bytes are callbacks wherever they run) may not poll it: WSAEINVAL, nothing taken
 * (what it took could be the calling stream's own completions). */
WSX_API int wsx_port_poll(wsx_port *port, DWORD timeout_ms);

/* Complete `op` through the port with `bytes` and NTSTATUS `status` (user events, tests).
 * The op must not be posted elsewhere. */
WSX_API int wsx_port_post(wsx_port *port, wsx_op *op, DWORD bytes, LONG status);

/* A snapshot of the port's counters (each read atomically). NULL port: all zero. */
WSX_API void wsx_port_get_stats(wsx_port *port, wsx_port_stats *out);
/* The completion port HANDLE (NULL for NULL), e.g. to associate other handles with completion
 * key 0. Every packet with an OVERLAPPED and key 0 must be the `ov` of a wsx_op (begun with
 * wsx_op_begin; its fn runs on completion); packets with other keys are ignored, never read.
 * Do not close it: wsx_port_destroy does. */
WSX_API HANDLE wsx_port_handle(wsx_port *port);

/* The port's buffer pool (streams read into its buffers). */
WSX_API wsx_buf_pool *wsx_port_buffers(wsx_port *port);

#ifdef __cplusplus
}
#endif

#endif
