/* ntstatus.h gives the official NTSTATUS values to check wsx's table against; windows.h must
 * not define its subset first. */
#define WIN32_NO_STATUS
#include <winsock2.h>
#include <windows.h>
#undef WIN32_NO_STATUS
#include <ntstatus.h>
#include <winternl.h>

#include "helpers.h"

TestSuite(error, .init = t_startup, .timeout = 30);

#define S(x)                                                                                       \
    {                                                                                              \
        (LONG)(x), #x                                                                              \
    }
static const struct {
    LONG status;
    const char *name;
} statuses[] = {
    S(STATUS_SUCCESS),
    S(STATUS_PENDING),
    S(STATUS_BUFFER_OVERFLOW),
    S(STATUS_HANDLES_CLOSED),
    S(STATUS_INVALID_HANDLE),
    S(STATUS_INVALID_PARAMETER),
    S(STATUS_NO_MEMORY),
    S(STATUS_ACCESS_DENIED),
    S(STATUS_INSUFFICIENT_RESOURCES),
    S(STATUS_PIPE_DISCONNECTED),
    S(STATUS_IO_TIMEOUT),
    S(STATUS_NOT_SUPPORTED),
    S(STATUS_CANCELLED),
    S(STATUS_LOCAL_DISCONNECT),
    S(STATUS_REMOTE_DISCONNECT),
    S(STATUS_INVALID_ADDRESS_COMPONENT),
    S(STATUS_ADDRESS_ALREADY_EXISTS),
    S(STATUS_CONNECTION_RESET),
    S(STATUS_CONNECTION_REFUSED),
    S(STATUS_GRACEFUL_DISCONNECT),
    S(STATUS_ADDRESS_ALREADY_ASSOCIATED),
    S(STATUS_CONNECTION_INVALID),
    S(STATUS_CONNECTION_ACTIVE),
    S(STATUS_NETWORK_UNREACHABLE),
    S(STATUS_HOST_UNREACHABLE),
    S(STATUS_PROTOCOL_UNREACHABLE),
    S(STATUS_PORT_UNREACHABLE),
    S(STATUS_CONNECTION_ABORTED),
};

/* wsx's NTSTATUS names and Win32 column agree with the SDK's values and with ntdll's own
 * RtlNtStatusToDosError: the table is data from the platform, not invented. */
Test(error, ntstatus_table_matches_the_platform)
{
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        LONG st = statuses[i].status;
        const char *name = wsx_ntstatus_name(st);
        cr_assert_not_null(name, "%s missing from the table", statuses[i].name);
        cr_assert_str_eq(name, statuses[i].name);
        cr_expect_eq(wsx_error_ntstatus_to_win32(st), RtlNtStatusToDosError(st),
                     "%s: wsx says %lu, ntdll says %lu", name, wsx_error_ntstatus_to_win32(st),
                     RtlNtStatusToDosError(st));
    }
    /* Not in the table: ntdll decides, then the Win32 table. */
    cr_assert_null(wsx_ntstatus_name((LONG)STATUS_OBJECT_NAME_NOT_FOUND));
    cr_assert_eq(wsx_error_ntstatus_to_win32((LONG)STATUS_OBJECT_NAME_NOT_FOUND),
                 ERROR_FILE_NOT_FOUND);
}

/* The mappings the toolkit relies on, in both directions that exist. */
Test(error, mappings_round_trip)
{
    static const struct {
        LONG status;
        DWORD win32;
        int wsa;
        wsx_kind kind;
    } rows[] = {
        {(LONG)STATUS_CONNECTION_RESET, ERROR_NETNAME_DELETED, WSAECONNRESET, WSX_KIND_PEER_RESET},
        {(LONG)STATUS_REMOTE_DISCONNECT, ERROR_NETNAME_DELETED, WSAECONNRESET, WSX_KIND_PEER_RESET},
        {(LONG)STATUS_LOCAL_DISCONNECT, ERROR_NETNAME_DELETED, WSAECONNABORTED, WSX_KIND_ABORTED},
        {(LONG)STATUS_CANCELLED, ERROR_OPERATION_ABORTED, WSA_OPERATION_ABORTED, WSX_KIND_ABORTED},
        {(LONG)STATUS_HANDLES_CLOSED, 676, WSA_OPERATION_ABORTED, WSX_KIND_ABORTED},
        {(LONG)STATUS_CONNECTION_REFUSED, ERROR_CONNECTION_REFUSED, WSAECONNREFUSED,
         WSX_KIND_REFUSED},
        {(LONG)STATUS_CONNECTION_ABORTED, ERROR_CONNECTION_ABORTED, WSAECONNABORTED,
         WSX_KIND_ABORTED},
        {(LONG)STATUS_IO_TIMEOUT, ERROR_SEM_TIMEOUT, WSAETIMEDOUT, WSX_KIND_OTHER},
        {(LONG)STATUS_SUCCESS, 0, 0, WSX_KIND_OK},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        OVERLAPPED ov;
        wsx_status st;
        memset(&ov, 0, sizeof ov);
        ov.Internal = (ULONG_PTR)(ULONG)rows[i].status;
        st = wsx_status_from_overlapped(&ov, 7, 0);
        cr_assert_eq(st.ntstatus, rows[i].status);
        cr_assert_eq(st.win32, rows[i].win32, "row %zu", i);
        cr_assert_eq(st.wsa, rows[i].wsa, "row %zu", i);
        cr_assert_eq(st.kind, rows[i].kind, "row %zu", i);
        cr_assert_eq(st.bytes, 7);
        cr_assert_eq(wsx_error_from_ntstatus(rows[i].status), rows[i].wsa);
    }
    /* A failure status wsx does not know is WSAEINVAL, as in Winsock; its Win32 code stays. */
    {
        OVERLAPPED ov;
        wsx_status st;
        memset(&ov, 0, sizeof ov);
        ov.Internal = (ULONG_PTR)(ULONG)0xC0000001L; /* STATUS_UNSUCCESSFUL */
        st = wsx_status_from_overlapped(&ov, 0, 0);
        cr_assert_eq(st.wsa, WSAEINVAL);
        cr_assert_eq(st.win32, ERROR_GEN_FAILURE);
        cr_assert_eq(wsx_error_from_ntstatus((LONG)0xC000012FL), WSAEINVAL);
        cr_assert_eq(wsx_error_from_ntstatus((LONG)0xC000011FL), WSAEMFILE, "too many files");
    }
    /* Win32 -> WSA where the Win32 code is all a caller has (GetLastError of GQCS). */
    cr_assert_eq(wsx_error_from_win32(ERROR_NETNAME_DELETED), WSAECONNRESET);
    cr_assert_eq(wsx_error_from_win32(ERROR_OPERATION_ABORTED), WSA_OPERATION_ABORTED);
    cr_assert_eq(wsx_error_from_win32(ERROR_CONNECTION_REFUSED), WSAECONNREFUSED);
    cr_assert_eq(wsx_error_from_win32(676), WSA_OPERATION_ABORTED);
    cr_assert_eq(wsx_error_from_win32(ERROR_CONNECTION_ABORTED), WSAECONNABORTED);
    cr_assert_eq(wsx_error_from_win32(ERROR_PORT_UNREACHABLE), WSAECONNRESET);
    cr_assert_eq(wsx_error_from_win32(ERROR_NOT_ENOUGH_MEMORY), WSAENOBUFS);
    /* WSA codes are their own mapping; unknown codes pass through unchanged. */
    for (int wsa = WSABASEERR; wsa < WSABASEERR + 1200; wsa++)
        cr_assert_eq(wsx_error_from_win32((DWORD)wsa), wsa);
    cr_assert_eq(wsx_error_from_win32(424242), 424242);
    /* A successful read of 0 bytes is EOF; of a write, just ok. */
    {
        OVERLAPPED ov;
        memset(&ov, 0, sizeof ov);
        cr_assert_eq(wsx_status_from_overlapped(&ov, 0, 1).kind, WSX_KIND_EOF);
        cr_assert_eq(wsx_status_from_overlapped(&ov, 0, 0).kind, WSX_KIND_OK);
        cr_assert_eq(wsx_status_from_overlapped(&ov, 5, 1).kind, WSX_KIND_OK);
    }
    {
        wsx_status st = wsx_status_from_wsa(WSAECONNRESET);
        cr_assert_eq(st.ntstatus, 0);
        cr_assert_eq(st.wsa, WSAECONNRESET);
        cr_assert_eq(st.kind, WSX_KIND_PEER_RESET);
    }
}

Test(error, names_and_texts)
{
    cr_assert_str_eq(wsx_error_name(WSAECONNRESET), "WSAECONNRESET");
    cr_assert_str_eq(wsx_error_name(WSA_OPERATION_ABORTED), "WSA_OPERATION_ABORTED");
    cr_assert_null(wsx_error_name(12345));
    cr_assert_str_eq(wsx_win32_name(ERROR_NETNAME_DELETED), "ERROR_NETNAME_DELETED");
    cr_assert_str_eq(wsx_win32_name(676), "ERROR_HANDLES_CLOSED");
    /* wsx_trace_open's file errors are named, and have no WSA code: returned as they are. */
    cr_assert_str_eq(wsx_win32_name(ERROR_PATH_NOT_FOUND), "ERROR_PATH_NOT_FOUND");
    cr_assert_eq(wsx_error_from_win32(ERROR_PATH_NOT_FOUND), ERROR_PATH_NOT_FOUND);
    cr_assert_eq(wsx_error_from_win32(ERROR_FILE_NOT_FOUND), ERROR_FILE_NOT_FOUND);
    cr_assert_str_eq(wsx_ntstatus_name((LONG)STATUS_CONNECTION_RESET), "STATUS_CONNECTION_RESET");
    cr_assert_str_eq(wsx_strerror(WSAECONNRESET), "connection reset by peer");
    cr_assert_str_eq(wsx_strerror(0), "success");
    /* A Win32 code with no WSA meaning (wsx_trace_open on a missing directory) gets a text. */
    cr_assert_str_neq(wsx_strerror(ERROR_PATH_NOT_FOUND), "unknown error");
    cr_assert_str_eq(wsx_strerror(-7), "unknown error");
    for (int code = -5; code < 12000; code++)
        cr_assert_not_null(wsx_strerror(code));
    cr_assert_str_eq(wsx_kind_name(WSX_KIND_OK), "ok");
    cr_assert_str_eq(wsx_kind_name(WSX_KIND_EOF), "eof");
    cr_assert_str_eq(wsx_kind_name(WSX_KIND_PEER_RESET), "peer-reset");
    cr_assert_str_eq(wsx_kind_name(WSX_KIND_ABORTED), "aborted-locally");
    cr_assert_str_eq(wsx_kind_name(WSX_KIND_REFUSED), "refused");
    cr_assert_str_eq(wsx_kind_name(WSX_KIND_OTHER), "other");
    cr_assert_str_eq(wsx_kind_name((wsx_kind)99), "other");
}

/* A connected pair whose server side has a WSARecv pending on a fresh port. */
typedef struct pending_recv {
    SOCKET srv, cli;
    HANDLE port;
    OVERLAPPED ov;
    char buf[16];
} pending_recv;

static void recv_post(pending_recv *p)
{
    WSABUF wb = {sizeof p->buf, p->buf};
    DWORD flags = 0;

    memset(p, 0, sizeof *p);
    p->cli = t_pair("127.0.0.1:0", &p->srv);
    p->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    cr_assert_not_null(CreateIoCompletionPort((HANDLE)p->srv, p->port, 0, 0));
    wb.buf = p->buf;
    cr_assert_eq(WSARecv(p->srv, &wb, 1, NULL, &flags, &p->ov, NULL), SOCKET_ERROR);
    cr_assert_eq(WSAGetLastError(), WSA_IO_PENDING);
}

/* What the provider itself says for the same OVERLAPPED: our mapping must agree with it. */
static int provider_wsa(SOCKET s, OVERLAPPED *ov)
{
    DWORD n = 0, flags = 0;
    if (WSAGetOverlappedResult(s, ov, &n, FALSE, &flags))
        return 0;
    return WSAGetLastError();
}

static void abortive_close(SOCKET s)
{
    struct linger lg = {1, 0};
    cr_assert_eq(setsockopt(s, SOL_SOCKET, SO_LINGER, (char *)&lg, sizeof lg), 0);
    closesocket(s);
}

Test(error, completion_peer_reset)
{
    pending_recv p;
    DWORD n = 0;
    ULONG_PTR key;
    OVERLAPPED *ov = NULL;
    wsx_status st;

    recv_post(&p);
    abortive_close(p.cli);
    /* The plain GQCS form, to see the Win32 code it reports beside ours. */
    cr_assert_eq(GetQueuedCompletionStatus(p.port, &n, &key, &ov, 5000), FALSE);
    cr_assert_eq(ov, &p.ov);
    cr_assert_eq(GetLastError(), ERROR_NETNAME_DELETED);
    st = wsx_status_from_overlapped(ov, n, 1);
    cr_assert_eq(st.ntstatus, (LONG)STATUS_CONNECTION_RESET, "%#lx", (unsigned long)st.ntstatus);
    cr_assert_eq(st.win32, ERROR_NETNAME_DELETED);
    cr_assert_eq(st.wsa, WSAECONNRESET);
    cr_assert_eq(st.wsa, provider_wsa(p.srv, &p.ov));
    cr_assert_eq(st.kind, WSX_KIND_PEER_RESET);
    closesocket(p.srv);
}

Test(error, completion_eof)
{
    pending_recv p;
    OVERLAPPED_ENTRY e;
    wsx_status st;

    recv_post(&p);
    cr_assert_eq(shutdown(p.cli, SD_SEND), 0);
    e = t_dequeue(p.port, 5000);
    st = wsx_status_from_entry(&e, 1);
    cr_assert_eq(st.ntstatus, 0);
    cr_assert_eq(st.bytes, 0);
    cr_assert_eq(st.kind, WSX_KIND_EOF);
    closesocket(p.srv);
    closesocket(p.cli);
}

Test(error, completion_cancelled)
{
    pending_recv p;
    OVERLAPPED_ENTRY e;
    wsx_status st;

    recv_post(&p);
    cr_assert(CancelIoEx((HANDLE)p.srv, &p.ov));
    e = t_dequeue(p.port, 5000);
    st = wsx_status_from_entry(&e, 1);
    cr_assert_eq(st.ntstatus, (LONG)STATUS_CANCELLED);
    cr_assert_eq(st.win32, ERROR_OPERATION_ABORTED);
    cr_assert_eq(st.wsa, WSA_OPERATION_ABORTED);
    cr_assert_eq(st.wsa, provider_wsa(p.srv, &p.ov));
    cr_assert_eq(st.kind, WSX_KIND_ABORTED);
    closesocket(p.srv);
    closesocket(p.cli);
}

/* closesocket with a recv pending: Windows completes it with STATUS_CANCELLED (995), Wine 8.0
 * with STATUS_HANDLES_CLOSED (676). Either way wsx classifies it as a local abort.
 * docs/semantics.md: "closesocket with a pending recv". */
Test(error, completion_closed_locally)
{
    pending_recv p;
    OVERLAPPED_ENTRY e;
    wsx_status st;

    recv_post(&p);
    closesocket(p.srv);
    e = t_dequeue(p.port, 5000);
    st = wsx_status_from_entry(&e, 1);
    cr_assert(st.ntstatus == (LONG)STATUS_CANCELLED || st.ntstatus == (LONG)STATUS_HANDLES_CLOSED,
              "%#lx", (unsigned long)st.ntstatus);
    cr_assert_eq(st.wsa, WSA_OPERATION_ABORTED);
    cr_assert_eq(st.kind, WSX_KIND_ABORTED);
    closesocket(p.cli);
}

Test(error, completion_refused)
{
    wsx_sockaddr dead;
    SOCKET probe = t_bound("127.0.0.1:0", SOCK_STREAM, &dead); /* bound, never listening */
    SOCKET c = t_bound("127.0.0.1:0", SOCK_STREAM, NULL);
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    const wsx_ext *x;
    OVERLAPPED ov;
    OVERLAPPED_ENTRY e;
    wsx_status st;
    DWORD n = 0;

    memset(&ov, 0, sizeof ov);
    cr_assert_eq(wsx_ext_get(c, &x), 0);
    cr_assert_not_null(CreateIoCompletionPort((HANDLE)c, port, 0, 0));
    t_assert_posted(x->ConnectEx(c, (struct sockaddr *)&dead.ss, dead.len, NULL, 0, &n, &ov),
                    "ConnectEx");
    e = t_dequeue(port, 10000);
    st = wsx_status_from_entry(&e, 0);
    cr_assert_eq(st.ntstatus, (LONG)STATUS_CONNECTION_REFUSED, "%#lx", (unsigned long)st.ntstatus);
    cr_assert_eq(st.win32, ERROR_CONNECTION_REFUSED);
    cr_assert_eq(st.wsa, WSAECONNREFUSED);
    cr_assert_eq(st.wsa, provider_wsa(c, &ov));
    cr_assert_eq(st.kind, WSX_KIND_REFUSED);
    closesocket(c);
    closesocket(probe);
}
