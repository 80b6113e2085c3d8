/* Listeners: a pool of pre-posted AcceptEx, initial-data accepts, and the connect-no-send reaper.
 *
 * Windows rules encoded here:
 * - AcceptEx completes on the listener's port; the accepted socket must get
 *   SO_UPDATE_ACCEPT_CONTEXT before it behaves as a connected socket (getpeername, shutdown).
 * - With a receive length > 0 it completes only when the client's first data arrives, so a client
 *   that connects and never sends would hold its AcceptEx forever. While it waits, SO_CONNECT_TIME
 * on the accept socket says how many seconds it has been connected (0xFFFFFFFF before a client).
 *   The reaper closes accept sockets connected longer than the limit; their AcceptEx then completes
 *   with an error and a fresh one is posted. Until then such clients hold their slots: while they
 *   hold more than half of the posted ones, the listener posts more (checked every second, up to
 *   4 x accepts), so that clients that do send are not left in the backlog behind them.
 * - A failure of one accept (a client that reset in the backlog, a socket shortage) concerns that
 *   client only: the listener closes that socket, posts a new accept and keeps serving.
 */
#ifndef WSX_ACCEPT_H
#define WSX_ACCEPT_H

#include "wsx/common.h"
#include "wsx/addr.h"
#include "wsx/ext.h"
#include "wsx/port.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wsx_listener wsx_listener;

typedef struct wsx_listener_opts {
    int accepts;            /* AcceptEx kept posted (1..4096); 0 = 8 */
    DWORD initial_data;     /* bytes the accept waits for, at most the port's buffer size;
                               0 = completes on connect */
    DWORD accept_timeout_s; /* with initial data: reap clients silent this long; 0 = never */
    int backlog;            /* listen() backlog; 0 = SOMAXCONN */
    int reuse;              /* accept into sockets given back by wsx_listener_recycle */
    /* More ports to share the accepting with (nspread of them, up to 63; not with reuse). The
     * slots are dealt round the listener's port and these; a slot's AcceptEx is posted again by
     * the thread that runs its callback, on its own port (wsx_accepted.port): accepting, opening
     * the stream there and the next AcceptEx then keep that port's worker busy, not the
     * listener's alone. Its completion still comes to the listener's port (a socket has one),
     * which hands it over: a packet more. These ports must be served, like the listener's, until
     * the listener has ended; wsx_port_destroy waits for it on each. */
    wsx_port *const *spread;
    int nspread;
} wsx_listener_opts;

/* One accepted connection. The callee owns `s` (not yet associated with any port). */
typedef struct wsx_accepted {
    SOCKET s;
    wsx_sockaddr local, remote;
    const char *data; /* the initial data; valid during the callback only */
    DWORD len;
    int eof; /* the client sent FIN before any data (initial-data accepts only) */
    /* A recycled socket: still associated with the port of the stream it served (a socket keeps
     * its port for life) and in skip-on-success mode (wsx_listener_recycle sets it). Open it on
     * that port with associated = 1 and skip_on_success = 1. */
    int reused;
    /* The port whose thread runs this callback: the listener's, or with opts.spread the slot's
     * own. Opening the stream on it keeps the connection's work on this thread. */
    wsx_port *port;
} wsx_accepted;

typedef void (*wsx_accept_fn)(wsx_listener *l, const wsx_accepted *a, void *user);

typedef struct wsx_listener_stats {
    LONG64 accepted; /* delivered to the callback */
    LONG64 failed;   /* accepts that completed or posted with an error (the client only) */
    LONG64 reaped;   /* connect-no-send clients closed by the reaper */
    LONG64 recycled; /* sockets made reusable by DisconnectEx(TF_REUSE_SOCKET) */
    LONG64 reused;   /* accepts completed on a recycled socket */
    /* Sockets given back for reuse that could not serve again: DisconnectEx or AcceptEx
     * refused them (Wine 8.0, every one: docs/semantics.md R1). */
    LONG64 reuse_failed;
} wsx_listener_stats;

/* Bind, listen and post the accept pool on `port`. `addr` "[::]:p" listens dual-stack
 * (IPV6_V6ONLY 0). The callback runs on port threads. Returns 0, the bind/listen error
 * (WSAEADDRINUSE...), WSAEOPNOTSUPP if the provider lacks AcceptEx, WSAEINVAL. */
WSX_API int wsx_listener_open(wsx_port *port, const wsx_sockaddr *addr,
                              const wsx_listener_opts *opts, wsx_accept_fn fn, void *user,
                              wsx_listener **out);

/* Stop accepting: cancel and close every pending accept and the listening socket. The listener is
 * freed once all of its accepts have completed; no callback runs after this returns... except
 * that a callback already running on another thread finishes. Call from any thread, once: the
 * listener may be freed before it returns. Returns 0, or WSAEINVAL for NULL. */
WSX_API int wsx_listener_close(wsx_listener *l);

/* Close an accepted socket the callback will not serve (a->eof, a refusal): abortive sends RST,
 * so that a client that sent a request cannot take the close for an empty answer; else FIN. Its
 * trace line (`close`, why `eof` or `unserved`) ends that connection's story under the id its
 * accept line gave it. From the accept callback, instead of closesocket(a->s). Returns 0, WSAEINVAL
 * (NULL or no socket) or closesocket's error. */
WSX_API int wsx_accepted_close(const wsx_accepted *a, int abortive);

/* Socket reuse (opts.reuse): give back the socket of a connection that ended in order (FIN both
 * ways, nothing pending; see wsx_stream_callbacks.on_release). wsx disconnects it with
 * DisconnectEx(TF_REUSE_SOCKET) and a later AcceptEx takes it instead of a new socket. The listener
 * owns `s` from this call; it is closed instead when reuse is off, the listener is closing, or
 * enough sockets are waiting. Do not call after wsx_listener_close. Under Wine 8.0
 * DisconnectEx(TF_REUSE_SOCKET) is only a half-close and AcceptEx refuses the socket: the listener
 * then closes it and takes a new one (counted in reuse_failed). */
WSX_API int wsx_listener_recycle(wsx_listener *l, SOCKET s);

/* The address the listener is bound to, with the real port when it was opened on port 0 (what
 * getsockname gave after bind). Returns 0 or WSAEINVAL (NULL argument). */
WSX_API int wsx_listener_address(wsx_listener *l, wsx_sockaddr *out);
/* A snapshot of the listener's counters (each read atomically; they may move between fields).
 * NULL listener: all zero. */
WSX_API void wsx_listener_get_stats(wsx_listener *l, wsx_listener_stats *out);

/* AcceptEx with the checks Wine does not make (Windows makes them in the provider): the accept
 * socket must be unbound and unconnected, the listener listening, and each address area at least
 * its family's sockaddr + 16 bytes. Returns 0 (posted: a completion will come), WSAEINVAL,
 * WSAEFAULT, or the AcceptEx error. */
WSX_API int wsx_accept_post(const wsx_ext *ext, SOCKET listener, SOCKET accept_socket, void *buf,
                            DWORD initial, DWORD local_len, DWORD remote_len, OVERLAPPED *ov);

#ifdef __cplusplus
}
#endif

#endif
