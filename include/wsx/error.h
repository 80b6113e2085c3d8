/* Errors: the three codes of one completion, mapped once, and their names.
 *
 * A completion carries an NTSTATUS (in OVERLAPPED.Internal); GetQueuedCompletionStatus reports
 * it as a Win32 code (64 ERROR_NETNAME_DELETED for a reset) and WSAGetOverlappedResult as a WSA
 * code (10054 WSAECONNRESET). The Win32 code loses information (64 is also what a local
 * disconnect gives), the NTSTATUS does not. wsx keeps all three beside each other.
 */
#ifndef WSX_ERROR_H
#define WSX_ERROR_H

#include "wsx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wsx_kind {
    WSX_KIND_OK,         /* success with data, or an operation that carries none */
    WSX_KIND_EOF,        /* a read completed with 0 bytes: the peer sent FIN */
    WSX_KIND_PEER_RESET, /* the peer reset the connection */
    WSX_KIND_ABORTED,    /* cancelled or closed on this side (CancelIoEx, closesocket) */
    WSX_KIND_REFUSED,    /* the peer refused the connection */
    WSX_KIND_OTHER
} wsx_kind;

typedef struct wsx_status {
    DWORD bytes;
    LONG ntstatus; /* raw NTSTATUS; 0 when the error came from a synchronous call */
    DWORD win32;   /* the code GetQueuedCompletionStatus would leave in GetLastError() */
    /* The code WSAGetOverlappedResult would give; what wsx functions return. A failure status
     * wsx does not know is WSAEINVAL, as in Winsock. Where Wine's Winsock loses the meaning,
     * wsx keeps it: STATUS_HANDLES_CLOSED is WSA_OPERATION_ABORTED, STATUS_TOO_MANY_OPENED_FILES
     * WSAEMFILE (Wine: WSAEINVAL for both). */
    int wsa;
    wsx_kind kind;
} wsx_status;

/* The WSA code for an NTSTATUS, the way the Winsock provider maps it (see wsx_status.wsa). */
WSX_API int wsx_error_from_ntstatus(LONG ntstatus);

/* The WSA code for a Win32 code (GetLastError()). WSA codes map to themselves; a code with no
 * WSA meaning is returned unchanged. */
WSX_API int wsx_error_from_win32(DWORD win32);

/* The Win32 code for an NTSTATUS (what GetQueuedCompletionStatus reports). */
WSX_API DWORD wsx_error_ntstatus_to_win32(LONG ntstatus);

/* The classified result of a completed OVERLAPPED (from GetQueuedCompletionStatus(Ex) or a
 * synchronous success). is_read: a 0-byte success means EOF. Reads ov->Internal only. */
WSX_API wsx_status wsx_status_from_overlapped(const OVERLAPPED *ov, DWORD bytes, int is_read);

/* The same for one entry of GetQueuedCompletionStatusEx. */
WSX_API wsx_status wsx_status_from_entry(const OVERLAPPED_ENTRY *entry, int is_read);

/* The result of a call that failed at once with WSAGetLastError() == wsa (no NTSTATUS). */
WSX_API wsx_status wsx_status_from_wsa(int wsa);

/* The kind of a WSA code: 0 ok, WSAEDISCON eof, WSAECONNRESET / WSAENETRESET peer-reset,
 * WSA_OPERATION_ABORTED / WSAECONNABORTED / WSAEINTR aborted-locally (what a local CancelIoEx or
 * closesocket gives), WSAECONNREFUSED refused, anything else other. */
WSX_API wsx_kind wsx_error_kind(int wsa);

/* "ok", "eof", "peer-reset", "aborted-locally", "refused", "other". */
WSX_API const char *wsx_kind_name(wsx_kind kind);

/* A short English text for a WSA code: "connection reset by peer"; for another code (a Win32
 * code with no WSA meaning), the system's message, in a buffer of the calling thread that the
 * next such call overwrites. Never NULL. */
WSX_API const char *wsx_strerror(int wsa);

/* Symbolic names: "WSAECONNRESET", "ERROR_NETNAME_DELETED", "STATUS_CONNECTION_RESET".
 * NULL for a code not in wsx's tables. */
WSX_API const char *wsx_error_name(int wsa);
WSX_API const char *wsx_win32_name(DWORD win32);
WSX_API const char *wsx_ntstatus_name(LONG ntstatus);

#ifdef __cplusplus
}
#endif

#endif
