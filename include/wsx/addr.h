/* Addresses: AcceptEx address areas, parsing and formatting.
 *
 * AcceptEx writes the local and the remote address after the initial data, each in an area that
 * must be at least 16 bytes larger than the sockaddr it holds; wsx sizes every area as
 * sizeof(SOCKADDR_STORAGE) + 16 so that one buffer layout serves IPv4, IPv6 and dual-stack.
 */
#ifndef WSX_ADDR_H
#define WSX_ADDR_H

#include "wsx/common.h"
#include "wsx/ext.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WSX_ACCEPT_ADDR_LEN ((DWORD)(sizeof(SOCKADDR_STORAGE) + 16))

/* Bytes of an AcceptEx output buffer that receives `initial` bytes of data before the
 * two address areas. */
#define WSX_ACCEPT_BUF_LEN(initial) ((DWORD)(initial) + 2 * WSX_ACCEPT_ADDR_LEN)

/* Longest text wsx_addr_format writes, NUL included: "[" IPv6 "%" scope "]:" port. */
#define WSX_ADDRSTRLEN 80

typedef struct wsx_sockaddr {
    SOCKADDR_STORAGE ss;
    int len;
} wsx_sockaddr;

/* Zero the address areas of an AcceptEx buffer before posting it, so that an area the
 * provider did not write is seen as empty (Wine leaves them unwritten on a 0-byte accept). */
WSX_API void wsx_accept_addrs_clear(void *buf, DWORD initial);

/* Decode the addresses of a completed AcceptEx with GetAcceptExSockaddrs, checking that each
 * lies inside the buffer and has the size of its family. If the buffer holds no valid address and
 * `accepted` is a socket (already given SO_UPDATE_ACCEPT_CONTEXT), fall back to getsockname and
 * getpeername on it. Returns 0, WSAEINVAL (bad arguments), WSAEFAULT (no valid address and no
 * fallback) or the fallback's error (WSAENOTCONN if the client is already gone). */
WSX_API int wsx_accept_addrs(const wsx_ext *ext, SOCKET accepted, void *buf, DWORD initial,
                             wsx_sockaddr *local, wsx_sockaddr *remote);

/* The size of the sockaddr of a family: sizeof(SOCKADDR_IN) / sizeof(SOCKADDR_IN6), else 0. */
WSX_API int wsx_addr_family_len(int af);

/* "127.0.0.1:7007", "[::1]:7007", "[fe80::1%3]:7007", "[::ffff:127.0.0.1]:7007".
 * Returns 0, WSAEFAULT (cap too small or len too short) or WSAEAFNOSUPPORT. */
WSX_API int wsx_addr_format(const struct sockaddr *sa, int len, char *out, size_t cap);

/* Parse "A.B.C.D:PORT" or "[IPv6]:PORT" (optional "%scope-number"); PORT 0..65535, decimal.
 * Returns 0 or WSAEINVAL; *out is zeroed first. */
WSX_API int wsx_addr_parse(const char *text, wsx_sockaddr *out);

/* The port of an AF_INET or AF_INET6 address in host byte order; 0 for NULL or another family. */
WSX_API unsigned short wsx_addr_port(const struct sockaddr *sa);

#ifdef __cplusplus
}
#endif

#endif
