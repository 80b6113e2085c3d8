/* Outgoing connections with ConnectEx.
 *
 * Windows rules encoded here: ConnectEx needs a bound socket (an unbound one fails with WSAEINVAL),
 * so wsx binds it to the wildcard address of the target's family; data given with the connect is
 * sent as part of it; SO_UPDATE_CONNECT_CONTEXT makes the socket usable for shutdown and
 * getpeername afterwards. A refused connect completes with STATUS_CONNECTION_REFUSED, which wsx
 * reports as WSAECONNREFUSED (kind refused). A socket whose ConnectEx failed is not retried: a
 * retry gets a new socket (Wine answers a second ConnectEx on the same socket with
 * WSAECONNABORTED).
 */
#ifndef WSX_CONNECT_H
#define WSX_CONNECT_H

#include "wsx/common.h"
#include "wsx/addr.h"
#include "wsx/error.h"
#include "wsx/port.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most data sent with a connect. ConnectEx completes only once all of it is sent, and the
 * stream that reads the answer is opened only then: a peer that answers as it reads (an echo)
 * fills our receive window and stops reading, and a larger first message would never complete. */
#define WSX_CONNECT_DATA_MAX 65536

/* On success `s` is connected, associated with the port (open a stream on it with
 * wsx_stream_opts.associated = 1) and owned by the callee; `sent` bytes of the data went with the
 * connect: queue the rest on the stream. On failure `s` is INVALID_SOCKET and st says why
 * (WSAETIMEDOUT for the port's connect_timeout_ms). Runs on a port thread. */
typedef void (*wsx_connect_fn)(SOCKET s, const wsx_status *st, DWORD sent, void *user);

/* Start a connect to `to` (IPv4, IPv6, or IPv4-mapped IPv6), sending the first `len` bytes of
 * `data` with it, up to WSX_CONNECT_DATA_MAX (copied; may be 0). Returns 0 (the callback will
 * run once), or an immediate error (the callback will not run). There is no cancel: the port's
 * connect_timeout_ms bounds the wait. */
WSX_API int wsx_connect(wsx_port *port, const wsx_sockaddr *to, const void *data, DWORD len,
                        wsx_connect_fn fn, void *user);

#ifdef __cplusplus
}
#endif

#endif
