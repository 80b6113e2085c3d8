/* Platform headers and conventions shared by every wsx header.
 * wsx functions return 0 or a WSA error code (WSAECONNRESET...), never -1 with errno. */
#ifndef WSX_COMMON_H
#define WSX_COMMON_H

/* winsock2.h must precede windows.h, or windows.h pulls in the old winsock.h. */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>

/* ConnectEx, WSASendMsg, inet_ntop and CancelIoEx need Vista or later. */
#if defined(_WIN32_WINNT) && _WIN32_WINNT < 0x0600
#error "wsx needs _WIN32_WINNT >= 0x0600"
#endif

#ifndef WSX_API
#define WSX_API
#endif

#endif
