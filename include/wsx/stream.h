/* Streams: one connected TCP socket on a port — reads, a bounded send queue, and every way a
 * connection ends.
 *
 * - Reads: one recv in flight. With zero_byte_reads, reads are adaptive: a stream starts on
 *   zero-byte reads (an idle connection holds no buffer; a full read takes the data once it is
 *   there), turns to full reads after two reads in a row found data within 50 ms, and is parked
 *   back on zero-byte reads when a read has waited 500 ms (the port cancels it: on_complete then
 *   sees one recv aborted-locally, which is not an error and does not end the stream).
 * - Sends: queued in order; one WSASend in flight gathers up to 16 queued buffers. A completion for
 *   fewer bytes than posted re-posts the rest first (partial-send continuation). Up to a quarter
 *   of a buffer is copied into the room left in the last queued buffer (and the buffer sent goes
 *   back to its pool), so a queue of small messages holds about its bytes, not a buffer each.
 * - Backpressure: no recv is posted while queued bytes + one buffer would exceed max_queued, so a
 *   peer that does not read cannot make the queue grow through echoing; reading resumes as the
 * queue drains.
 * - Endings: peer FIN (on_eof; by default the stream finishes its queue, sends FIN and closes),
 *   graceful close, half-close (wsx_stream_shutdown), abortive close (SO_LINGER {1,0}: RST), and
 *   errors. A local close cancels pending I/O with CancelIoEx before closesocket; the stream is
 *   released only when its last pending operation has completed, then on_close runs once.
 *
 * Threads: callbacks of one stream never run concurrently (each stream has a lock that is held
 * during its callbacks); they run on port threads, or on the thread of a wsx_stream_* call whose
 * operation completed inline. Do not call into another stream from a callback while that stream's
 * thread may call into this one, except with wsx_stream_ref_send / wsx_stream_ref_close, which
 * decline instead of waiting.
 */
#ifndef WSX_STREAM_H
#define WSX_STREAM_H

#include "wsx/common.h"
#include "wsx/buf.h"
#include "wsx/error.h"
#include "wsx/op.h"
#include "wsx/port.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wsx_stream wsx_stream;

typedef struct wsx_stream_callbacks {
    /* Data arrived in buf->data[buf->off..buf->len). The buffer now belongs to the callee: send it
     * on (wsx_stream_send_buf) or give it back (wsx_buf_put). Required. */
    void (*on_data)(wsx_stream *s, wsx_buf *buf);
    /* The peer sent FIN. NULL: finish sending what is queued, then FIN and close. */
    void (*on_eof)(wsx_stream *s);
    /* Once, when the stream is gone: socket closed and no operation pending. `why` is the first
     * failure (kind aborted-locally for wsx_stream_reset), or kind ok/eof for an orderly end. */
    void (*on_close)(wsx_stream *s, const wsx_status *why);
    /* Optional: every completion of this stream, after classification (debugging, tracing,
     * pumping). It runs once the completion has taken effect (a send's bytes have left the
     * queue, a TransmitFile is over), before on_data of a read's bytes: what it sends goes
     * after what completed, and a next wsx_stream_transmit_file is accepted. */
    void (*on_complete)(wsx_stream *s, wsx_op_kind kind, const wsx_status *st);
    /* Optional (socket reuse): when the connection ended in order — FIN both ways, nothing
     * queued or pending — the stream hands its socket here instead of closing it (then on_close
     * runs as usual). The callee owns `sock`, e.g. for wsx_listener_recycle. */
    void (*on_release)(wsx_stream *s, SOCKET sock);
} wsx_stream_callbacks;

/* A reference that stays safe to use after the stream has ended: stream memory is recycled, never
 * freed while its port lives, and each reuse gets a new generation. Use it from threads other than
 * the stream's own callbacks (timers, a control thread). */
typedef struct wsx_stream_ref {
    wsx_stream *s;
    LONG gen;
} wsx_stream_ref;

typedef struct wsx_stream_opts {
    /* Send-queue bytes above which reading pauses; 0 = 4 buffers; capped at 4 GiB - 1. It does
     * not limit what wsx_stream_send queues (watch wsx_stream_get_info or on_complete for that):
     * a client that queues a message larger than this stops reading until it has drained, and
     * against a peer that answers as it reads (an echo) both sides then wait. */
    size_t max_queued;
    int zero_byte_reads; /* idle connections hold no buffer */
    int skip_on_success; /* complete operations that succeed at once inline */
    int associated;      /* the socket is already associated with this port (wsx_connect) */
    /* If not NULL: set to the stream's reference before anything can end it ({NULL, 0} if the
     * open fails). How code outside callbacks keeps hold of a stream it opened (see
     * wsx_stream_open). */
    wsx_stream_ref *ref;
} wsx_stream_opts;

typedef struct wsx_stream_info {
    size_t queued;       /* bytes waiting to be sent */
    size_t max_queued;   /* the cap in effect */
    size_t peak_queued;  /* highest `queued` seen */
    int pending;         /* operations the kernel owns */
    int skip_on_success; /* whether skip-on-success took effect */
    int reading_paused;  /* backpressure holds reads */
    unsigned long long bytes_in, bytes_out;
} wsx_stream_info;

/* Take over a connected socket (SO_UPDATE_ACCEPT/CONNECT_CONTEXT already set): associate it with
 * the port and start reading. `initial` (len bytes, e.g. an initial-data accept's) reaches on_data
 * before anything read later, as a callback: what completes meanwhile is delivered after it
 * returns. *out is set before any callback can run. On failure the socket is closed and *out is
 * NULL. Returns 0, WSAEINVAL, WSAENOBUFS, or the association error. The stream can end within
 * the call: on_data given `initial` closed it, no buffer was left for the first read, or (called
 * outside a callback, where what completes at once is delivered before the call returns) the
 * peer's FIN or RST came. Then *out is set to NULL before on_close runs (which may free the
 * memory *out is in), and 0 is returned.
 *
 * How long *out may be used: once the call has returned, the stream's I/O completes on the port's
 * threads, and a FIN, RST or failure there can end it at any time; its object then serves the
 * next stream opened. Called from a callback (a listener's on_accept, wsx_connect's callback, a
 * stream's), the pointer stays this stream's until that callback returns, even if the stream ends
 * meanwhile on another thread (calls on it then fail: WSAESHUTDOWN, WSAENOTCONN). Outside
 * callbacks, use opts.ref (wsx_stream_ref_send, wsx_stream_ref_close) rather than the pointer.
 * From its own callbacks the pointer they are given is valid until on_close returns. */
WSX_API int wsx_stream_open(wsx_port *port, SOCKET s, const wsx_stream_opts *opts,
                            const wsx_stream_callbacks *cb, void *user, const void *initial,
                            DWORD len, wsx_stream **out);

/* Queue a copy of data. Returns 0, WSAESHUTDOWN after shutdown/close, WSAENOBUFS. */
WSX_API int wsx_stream_send(wsx_stream *s, const void *data, size_t len);

/* Queue a buffer (from the port's pool or any wsx pool); the stream owns it from now on, also on
 * error. */
WSX_API int wsx_stream_send_buf(wsx_stream *s, wsx_buf *buf);

/* Send `len` bytes of `file` from `offset` with TransmitFile, between `head` and `tail` (copied;
 * each at most the pool's buffer size), in order with the queue: after what is queued before,
 * before what is queued after. One at a time: WSAEALREADY while one is in progress. The file handle
 * must stay open until the stream's next completion of kind transmitfile, or its on_close if the
 * stream ends before the file's turn comes. */
WSX_API int wsx_stream_transmit_file(wsx_stream *s, HANDLE file, ULONGLONG offset, DWORD len,
                                     const void *head, DWORD head_len, const void *tail,
                                     DWORD tail_len);

/* Half-close: after the queue is sent, shutdown(SD_SEND). Reading goes on. Returns 0,
 * WSAENOTCONN if the stream is closed already, WSAEINVAL for NULL (so do close and reset). */
WSX_API int wsx_stream_shutdown(wsx_stream *s);

/* Graceful close: send what is queued, FIN, then close when the peer's FIN comes or after 2 s.
 * What arrives meanwhile is read and dropped, not delivered: closing on unread data would send
 * RST, which loses the end of what was sent (docs/semantics.md P16). Those reads take no buffer
 * from the pool. A peer that is still sending when you close loses what it sends: to reply to
 * all of it, half-close with wsx_stream_shutdown and close once on_eof (or on_data) says so. */
WSX_API int wsx_stream_close(wsx_stream *s);

/* Abortive close: drop the queue, SO_LINGER {1,0}, cancel, close: the peer gets RST. */
WSX_API int wsx_stream_reset(wsx_stream *s);

typedef enum wsx_close_how {
    WSX_CLOSE_GRACEFUL, /* wsx_stream_close */
    WSX_CLOSE_RESET,    /* wsx_stream_reset */
    WSX_CLOSE_SHUTDOWN  /* wsx_stream_shutdown */
} wsx_close_how;

/* A reference to the stream as it is now (its current generation). */
WSX_API wsx_stream_ref wsx_stream_get_ref(wsx_stream *s);

/* Close the referenced connection if it is still the one referenced and not yet closed;
 * WSAENOTCONN otherwise. Like wsx_stream_ref_send, from a callback it does not wait for the
 * stream's lock: WSAEWOULDBLOCK while that stream's callback runs on another thread. */
WSX_API int wsx_stream_ref_close(wsx_stream_ref ref, wsx_close_how how);

/* Queue a copy of data on the referenced connection if it is still the one referenced and open,
 * from any thread: a timer, a control thread, or a callback of another stream (a broadcast). From
 * a callback it never waits for the other stream's lock (two streams' callbacks sending to each
 * other would wait for ever): WSAEWOULDBLOCK, nothing queued, while that stream's own callback
 * runs on another thread; try again later. Returns as wsx_stream_send, WSAENOTCONN, or that. */
WSX_API int wsx_stream_ref_send(wsx_stream_ref ref, const void *data, size_t len);

/* Close, with `how`, every open stream of the port that has neither received nor sent data for
 * idle_ms or more, has nothing waiting to be sent and no data on its way in (bytes in its socket,
 * a read completed but not delivered yet) (0: every open stream): a stream whose peer is slow to
 * read its replies is not idle, the send timeout covers it. A stream already half-closed is not
 * asked to half-close again. One stream at a time, under
 * its own lock; callbacks (on_close) may run on the calling thread. Returns how many streams were
 * asked to close (0 for a NULL port). This is the idle timeout and the orderly stop of a server
 * without a list of its own: wsx walks the streams it keeps anyway. Not from a stream callback: it
 * waits for each stream's lock, and two such calls from callbacks on two threads would wait for
 * each other's stream. */
WSX_API int wsx_port_close_streams(wsx_port *port, DWORD idle_ms, wsx_close_how how);

/* The `user` pointer given to wsx_stream_open (NULL for NULL). */
WSX_API void *wsx_stream_user(const wsx_stream *s);
/* The stream's socket (INVALID_SOCKET for NULL). Use it for queries (getpeername, getsockopt),
 * not for I/O or closing: the stream owns it. */
WSX_API SOCKET wsx_stream_socket(const wsx_stream *s);
/* The port the stream runs on (NULL for NULL). */
WSX_API wsx_port *wsx_stream_port(const wsx_stream *s);
/* A consistent snapshot of the stream's queue and counters (taken under its lock). NULL stream:
 * all zero. */
WSX_API void wsx_stream_get_info(wsx_stream *s, wsx_stream_info *out);

#ifdef __cplusplus
}
#endif

#endif
