#include "internal.h"

#include <winternl.h>

/* Win32 codes that some SDK headers (mingw-w64's among them) do not define. */
#ifndef ERROR_HANDLES_CLOSED
#define ERROR_HANDLES_CLOSED 676L
#endif
#ifndef ERROR_CANT_WAIT
#define ERROR_CANT_WAIT 554L
#endif

/* NTSTATUS values are written as numbers: ntstatus.h clashes with windows.h's subset.
 * Columns: status, name, Win32 code (RtlNtStatusToDosError), WSA code (as the Winsock provider
 * maps it for WSAGetOverlappedResult). The Win32 column is why a reset and a local disconnect
 * look alike to GetQueuedCompletionStatus (both 64) while their WSA codes differ. */
#define WSX_NTSTATUS_MAP(X)                                                                        \
    X(0x00000000L, "STATUS_SUCCESS", ERROR_SUCCESS, 0)                                             \
    X(0x00000103L, "STATUS_PENDING", ERROR_IO_PENDING, WSA_IO_PENDING)                             \
    X(0x00000102L, "STATUS_TIMEOUT", WAIT_TIMEOUT, WSAETIMEDOUT)                                   \
    X(0x80000005L, "STATUS_BUFFER_OVERFLOW", ERROR_MORE_DATA, WSAEMSGSIZE)                         \
    /* Wine completes I/O pending on a closed socket with this warning status (676). */            \
    X(0x8000000AL, "STATUS_HANDLES_CLOSED", ERROR_HANDLES_CLOSED, WSA_OPERATION_ABORTED)           \
    X(0xC0000005L, "STATUS_ACCESS_VIOLATION", ERROR_NOACCESS, WSAEFAULT)                           \
    X(0xC0000008L, "STATUS_INVALID_HANDLE", ERROR_INVALID_HANDLE, WSAENOTSOCK)                     \
    X(0xC000000DL, "STATUS_INVALID_PARAMETER", ERROR_INVALID_PARAMETER, WSAEINVAL)                 \
    X(0xC0000017L, "STATUS_NO_MEMORY", ERROR_NOT_ENOUGH_MEMORY, WSAENOBUFS)                        \
    X(0xC0000022L, "STATUS_ACCESS_DENIED", ERROR_ACCESS_DENIED, WSAEACCES)                         \
    X(0xC0000024L, "STATUS_OBJECT_TYPE_MISMATCH", ERROR_INVALID_HANDLE, WSAENOTSOCK)               \
    X(0xC0000043L, "STATUS_SHARING_VIOLATION", ERROR_SHARING_VIOLATION, WSAEADDRINUSE)             \
    X(0xC000009AL, "STATUS_INSUFFICIENT_RESOURCES", ERROR_NO_SYSTEM_RESOURCES, WSAENOBUFS)         \
    X(0xC00000A3L, "STATUS_DEVICE_NOT_READY", ERROR_NOT_READY, WSAEWOULDBLOCK)                     \
    X(0xC00000B0L, "STATUS_PIPE_DISCONNECTED", ERROR_PIPE_NOT_CONNECTED, WSAESHUTDOWN)             \
    X(0xC00000B5L, "STATUS_IO_TIMEOUT", ERROR_SEM_TIMEOUT, WSAETIMEDOUT)                           \
    X(0xC00000BBL, "STATUS_NOT_SUPPORTED", ERROR_NOT_SUPPORTED, WSAEOPNOTSUPP)                     \
    X(0xC00000BFL, "STATUS_NETWORK_BUSY", ERROR_NETWORK_BUSY, WSAENETDOWN)                         \
    X(0xC00000D8L, "STATUS_CANT_WAIT", ERROR_CANT_WAIT, WSAEWOULDBLOCK)                            \
    X(0xC000011FL, "STATUS_TOO_MANY_OPENED_FILES", ERROR_TOO_MANY_OPEN_FILES, WSAEMFILE)           \
    X(0xC0000120L, "STATUS_CANCELLED", ERROR_OPERATION_ABORTED, WSA_OPERATION_ABORTED)             \
    X(0xC000013BL, "STATUS_LOCAL_DISCONNECT", ERROR_NETNAME_DELETED, WSAECONNABORTED)              \
    X(0xC000013CL, "STATUS_REMOTE_DISCONNECT", ERROR_NETNAME_DELETED, WSAECONNRESET)               \
    X(0xC0000140L, "STATUS_INVALID_CONNECTION", ERROR_UNEXP_NET_ERR, WSAENOTCONN)                  \
    X(0xC0000207L, "STATUS_INVALID_ADDRESS_COMPONENT", ERROR_INVALID_NETNAME, WSAEADDRNOTAVAIL)    \
    X(0xC000020AL, "STATUS_ADDRESS_ALREADY_EXISTS", ERROR_DUP_NAME, WSAEADDRINUSE)                 \
    X(0xC000020DL, "STATUS_CONNECTION_RESET", ERROR_NETNAME_DELETED, WSAECONNRESET)                \
    X(0xC0000236L, "STATUS_CONNECTION_REFUSED", ERROR_CONNECTION_REFUSED, WSAECONNREFUSED)         \
    X(0xC0000237L, "STATUS_GRACEFUL_DISCONNECT", ERROR_GRACEFUL_DISCONNECT, WSAEDISCON)            \
    X(0xC0000238L, "STATUS_ADDRESS_ALREADY_ASSOCIATED", ERROR_ADDRESS_ALREADY_ASSOCIATED,          \
      WSAEADDRINUSE)                                                                               \
    X(0xC000023AL, "STATUS_CONNECTION_INVALID", ERROR_CONNECTION_INVALID, WSAENOTCONN)             \
    X(0xC000023BL, "STATUS_CONNECTION_ACTIVE", ERROR_CONNECTION_ACTIVE, WSAEISCONN)                \
    X(0xC000023CL, "STATUS_NETWORK_UNREACHABLE", ERROR_NETWORK_UNREACHABLE, WSAENETUNREACH)        \
    X(0xC000023DL, "STATUS_HOST_UNREACHABLE", ERROR_HOST_UNREACHABLE, WSAEHOSTUNREACH)             \
    X(0xC000023EL, "STATUS_PROTOCOL_UNREACHABLE", ERROR_PROTOCOL_UNREACHABLE, WSAENETUNREACH)      \
    X(0xC000023FL, "STATUS_PORT_UNREACHABLE", ERROR_PORT_UNREACHABLE, WSAECONNRESET)               \
    X(0xC0000241L, "STATUS_CONNECTION_ABORTED", ERROR_CONNECTION_ABORTED, WSAECONNABORTED)         \
    X(0xC000A012L, "STATUS_HOPLIMIT_EXCEEDED", ERROR_HOST_UNREACHABLE, WSAENETUNREACH)

/* Win32 codes a completion or an overlapped call reports, and their WSA meaning. */
#define WSX_WIN32_MAP(X)                                                                           \
    X(ERROR_SUCCESS, 0)                                                                            \
    X(ERROR_FILE_NOT_FOUND, ERROR_FILE_NOT_FOUND) /* no WSA meaning (wsx_trace_open) */            \
    X(ERROR_PATH_NOT_FOUND, ERROR_PATH_NOT_FOUND)                                                  \
    X(ERROR_INVALID_HANDLE, WSAENOTSOCK)                                                           \
    X(ERROR_TOO_MANY_OPEN_FILES, WSAEMFILE)                                                        \
    X(ERROR_NOT_ENOUGH_MEMORY, WSAENOBUFS)                                                         \
    X(ERROR_OUTOFMEMORY, WSAENOBUFS)                                                               \
    X(ERROR_NO_SYSTEM_RESOURCES, WSAENOBUFS)                                                       \
    X(ERROR_ACCESS_DENIED, WSAEACCES)                                                              \
    X(ERROR_NETWORK_ACCESS_DENIED, WSAEACCES)                                                      \
    X(ERROR_SHARING_VIOLATION, WSAEADDRINUSE)                                                      \
    X(ERROR_NOT_READY, WSAEWOULDBLOCK)                                                             \
    X(ERROR_CANT_WAIT, WSAEWOULDBLOCK)                                                             \
    X(ERROR_NOT_SUPPORTED, WSAEOPNOTSUPP)                                                          \
    X(ERROR_DUP_NAME, WSAEADDRINUSE)                                                               \
    X(ERROR_NETWORK_BUSY, WSAENETDOWN)                                                             \
    X(ERROR_UNEXP_NET_ERR, WSAENOTCONN)                                                            \
    X(ERROR_NETNAME_DELETED, WSAECONNRESET)                                                        \
    X(ERROR_INVALID_PARAMETER, WSAEINVAL)                                                          \
    X(ERROR_BROKEN_PIPE, WSAESHUTDOWN)                                                             \
    X(ERROR_SEM_TIMEOUT, WSAETIMEDOUT)                                                             \
    X(ERROR_NO_DATA, WSAESHUTDOWN)                                                                 \
    X(ERROR_PIPE_NOT_CONNECTED, WSAESHUTDOWN)                                                      \
    X(ERROR_MORE_DATA, WSAEMSGSIZE)                                                                \
    X(WAIT_TIMEOUT, WSAETIMEDOUT)                                                                  \
    X(ERROR_HANDLES_CLOSED, WSA_OPERATION_ABORTED)                                                 \
    X(ERROR_OPERATION_ABORTED, WSA_OPERATION_ABORTED)                                              \
    X(ERROR_IO_INCOMPLETE, WSA_IO_INCOMPLETE)                                                      \
    X(ERROR_IO_PENDING, WSA_IO_PENDING)                                                            \
    X(ERROR_NOACCESS, WSAEFAULT)                                                                   \
    X(ERROR_INVALID_NETNAME, WSAEADDRNOTAVAIL)                                                     \
    X(ERROR_CONNECTION_REFUSED, WSAECONNREFUSED)                                                   \
    X(ERROR_GRACEFUL_DISCONNECT, WSAEDISCON)                                                       \
    X(ERROR_ADDRESS_ALREADY_ASSOCIATED, WSAEADDRINUSE)                                             \
    X(ERROR_ADDRESS_NOT_ASSOCIATED, WSAEADDRNOTAVAIL)                                              \
    X(ERROR_CONNECTION_INVALID, WSAENOTCONN)                                                       \
    X(ERROR_CONNECTION_ACTIVE, WSAEISCONN)                                                         \
    X(ERROR_NETWORK_UNREACHABLE, WSAENETUNREACH)                                                   \
    X(ERROR_HOST_UNREACHABLE, WSAEHOSTUNREACH)                                                     \
    X(ERROR_PROTOCOL_UNREACHABLE, WSAENETUNREACH)                                                  \
    X(ERROR_PORT_UNREACHABLE, WSAECONNRESET)                                                       \
    X(ERROR_CONNECTION_ABORTED, WSAECONNABORTED)                                                   \
    X(ERROR_TIMEOUT, WSAETIMEDOUT)                                                                 \
    X(ERROR_INVALID_USER_BUFFER, WSAEFAULT)

#define WSX_WSA_MAP(X)                                                                             \
    X(WSAEINTR, "interrupted function call")                                                       \
    X(WSAEBADF, "file handle is not valid")                                                        \
    X(WSAEACCES, "permission denied")                                                              \
    X(WSAEFAULT, "bad address")                                                                    \
    X(WSAEINVAL, "invalid argument")                                                               \
    X(WSAEMFILE, "too many open sockets")                                                          \
    X(WSAEWOULDBLOCK, "resource temporarily unavailable")                                          \
    X(WSAEINPROGRESS, "operation now in progress")                                                 \
    X(WSAEALREADY, "operation already in progress")                                                \
    X(WSAENOTSOCK, "socket operation on nonsocket")                                                \
    X(WSAEDESTADDRREQ, "destination address required")                                             \
    X(WSAEMSGSIZE, "message too long")                                                             \
    X(WSAEPROTOTYPE, "protocol wrong type for socket")                                             \
    X(WSAENOPROTOOPT, "bad protocol option")                                                       \
    X(WSAEPROTONOSUPPORT, "protocol not supported")                                                \
    X(WSAESOCKTNOSUPPORT, "socket type not supported")                                             \
    X(WSAEOPNOTSUPP, "operation not supported")                                                    \
    X(WSAEPFNOSUPPORT, "protocol family not supported")                                            \
    X(WSAEAFNOSUPPORT, "address family not supported by protocol family")                          \
    X(WSAEADDRINUSE, "address already in use")                                                     \
    X(WSAEADDRNOTAVAIL, "cannot assign requested address")                                         \
    X(WSAENETDOWN, "network is down")                                                              \
    X(WSAENETUNREACH, "network is unreachable")                                                    \
    X(WSAENETRESET, "network dropped connection on reset")                                         \
    X(WSAECONNABORTED, "connection aborted on this host")                                          \
    X(WSAECONNRESET, "connection reset by peer")                                                   \
    X(WSAENOBUFS, "no buffer space available")                                                     \
    X(WSAEISCONN, "socket is already connected")                                                   \
    X(WSAENOTCONN, "socket is not connected")                                                      \
    X(WSAESHUTDOWN, "cannot send after socket shutdown")                                           \
    X(WSAETIMEDOUT, "connection timed out")                                                        \
    X(WSAECONNREFUSED, "connection refused")                                                       \
    X(WSAEHOSTDOWN, "host is down")                                                                \
    X(WSAEHOSTUNREACH, "no route to host")                                                         \
    X(WSAEPROCLIM, "too many processes")                                                           \
    X(WSASYSNOTREADY, "network subsystem is unavailable")                                          \
    X(WSAVERNOTSUPPORTED, "Winsock version out of range")                                          \
    X(WSANOTINITIALISED, "WSAStartup was not called")                                              \
    X(WSAEDISCON, "graceful shutdown in progress")                                                 \
    X(WSA_IO_PENDING, "overlapped operation is pending")                                           \
    X(WSA_IO_INCOMPLETE, "overlapped operation is not complete")                                   \
    X(WSA_OPERATION_ABORTED, "overlapped operation aborted")                                       \
    X(WSA_INVALID_HANDLE, "invalid event handle")                                                  \
    X(WSA_INVALID_PARAMETER, "invalid parameter")                                                  \
    X(WSA_NOT_ENOUGH_MEMORY, "not enough memory")

typedef struct nt_row {
    LONG status;
    const char *name;
    DWORD win32;
    int wsa;
} nt_row;

typedef struct win32_row {
    DWORD win32;
    const char *name;
    int wsa;
} win32_row;

typedef struct wsa_row {
    int wsa;
    const char *name;
    const char *text;
} wsa_row;

#define NT_ROW(st, nm, w32, wsa) {(LONG)(st), nm, w32, wsa},
#define WIN32_ROW(w32, wsa) {w32, #w32, wsa},
#define WSA_ROW(wsa, text) {wsa, #wsa, text},

static const nt_row nt_rows[] = {WSX_NTSTATUS_MAP(NT_ROW)};
static const win32_row win32_rows[] = {WSX_WIN32_MAP(WIN32_ROW)};
static const wsa_row wsa_rows[] = {WSX_WSA_MAP(WSA_ROW)};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const nt_row *nt_find(LONG status)
{
    for (size_t i = 0; i < COUNT(nt_rows); i++)
        if (nt_rows[i].status == status)
            return &nt_rows[i];
    return NULL;
}

static const win32_row *win32_find(DWORD code)
{
    for (size_t i = 0; i < COUNT(win32_rows); i++)
        if (win32_rows[i].win32 == code)
            return &win32_rows[i];
    return NULL;
}

static const wsa_row *wsa_find(int code)
{
    for (size_t i = 0; i < COUNT(wsa_rows); i++)
        if (wsa_rows[i].wsa == code)
            return &wsa_rows[i];
    return NULL;
}

DWORD wsx_error_ntstatus_to_win32(LONG ntstatus)
{
    const nt_row *r = nt_find(ntstatus);
    return r ? r->win32 : RtlNtStatusToDosError(ntstatus);
}

int wsx_error_from_win32(DWORD win32)
{
    const win32_row *r = win32_find(win32);
    if (r)
        return r->wsa;
    return (int)win32;
}

/* A failure the tables do not know is WSAEINVAL, as Winsock reports it (Wine's
 * NtStatusToWSAError): its own Win32 code stays in wsx_status.win32. */
int wsx_error_from_ntstatus(LONG ntstatus)
{
    const nt_row *r = nt_find(ntstatus);
    const win32_row *w;
    DWORD win32;

    if (r)
        return r->wsa;
    win32 = RtlNtStatusToDosError(ntstatus);
    if (win32 >= WSABASEERR && win32 < WSABASEERR + 1200)
        return (int)win32;
    w = win32_find(win32);
    return w ? w->wsa : WSAEINVAL;
}

wsx_kind wsx_error_kind(int wsa)
{
    switch (wsa) {
    case 0:
        return WSX_KIND_OK;
    case WSAEDISCON:
        return WSX_KIND_EOF;
    case WSAECONNRESET:
    case WSAENETRESET:
        return WSX_KIND_PEER_RESET;
    case WSA_OPERATION_ABORTED:
    case WSAECONNABORTED:
    case WSAEINTR:
        return WSX_KIND_ABORTED;
    case WSAECONNREFUSED:
        return WSX_KIND_REFUSED;
    default:
        return WSX_KIND_OTHER;
    }
}

static wsx_status status_make(LONG ntstatus, DWORD bytes, int is_read)
{
    wsx_status st;

    st.bytes = bytes;
    st.ntstatus = ntstatus;
    st.win32 = wsx_error_ntstatus_to_win32(ntstatus);
    st.wsa = wsx_error_from_ntstatus(ntstatus);
    st.kind = wsx_error_kind(st.wsa);
    if (st.kind == WSX_KIND_OK && is_read && bytes == 0)
        st.kind = WSX_KIND_EOF;
    return st;
}

/* OVERLAPPED.Internal holds the NTSTATUS of a completed operation. Any non-zero status is a
 * failure here, warnings (0x8...) included: Wine's STATUS_HANDLES_CLOSED is one. */
wsx_status wsx_status_from_overlapped(const OVERLAPPED *ov, DWORD bytes, int is_read)
{
    return status_make(ov ? (LONG)ov->Internal : 0, bytes, is_read);
}

wsx_status wsx_status_from_entry(const OVERLAPPED_ENTRY *entry, int is_read)
{
    if (entry == NULL)
        return wsx_status_from_wsa(WSAEFAULT);
    return wsx_status_from_overlapped(entry->lpOverlapped, entry->dwNumberOfBytesTransferred,
                                      is_read);
}

wsx_status wsx_status_from_wsa(int wsa)
{
    wsx_status st;

    st.bytes = 0;
    st.ntstatus = 0;
    st.win32 = (DWORD)wsa;
    st.wsa = wsx_error_from_win32((DWORD)wsa);
    st.kind = wsx_error_kind(st.wsa);
    return st;
}

const char *wsx_kind_name(wsx_kind kind)
{
    switch (kind) {
    case WSX_KIND_OK:
        return "ok";
    case WSX_KIND_EOF:
        return "eof";
    case WSX_KIND_PEER_RESET:
        return "peer-reset";
    case WSX_KIND_ABORTED:
        return "aborted-locally";
    case WSX_KIND_REFUSED:
        return "refused";
    default:
        return "other";
    }
}

const char *wsx_strerror(int wsa)
{
    /* Per thread: the system's text for a code outside the table (a Win32 code with no WSA
     * meaning, from a file operation: ERROR_PATH_NOT_FOUND...). */
    static WSX_TLS char sys[160];
    const wsa_row *r;
    DWORD n;

    if (wsa == 0)
        return "success";
    r = wsa_find(wsa);
    if (r)
        return r->text;
    n = wsa > 0 ? FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL,
                                 (DWORD)wsa, 0, sys, sizeof sys, NULL)
                : 0;
    while (n > 0 &&
           (sys[n - 1] == '\n' || sys[n - 1] == '\r' || sys[n - 1] == '.' || sys[n - 1] == ' '))
        sys[--n] = '\0';
    return n > 0 ? sys : "unknown error";
}

const char *wsx_error_name(int wsa)
{
    const wsa_row *r = wsa_find(wsa);
    return r ? r->name : NULL;
}

const char *wsx_win32_name(DWORD win32)
{
    const win32_row *r = win32_find(win32);
    return r ? r->name : NULL;
}

const char *wsx_ntstatus_name(LONG ntstatus)
{
    const nt_row *r = nt_find(ntstatus);
    return r ? r->name : NULL;
}
