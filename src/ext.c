#include "internal.h"

#include <stdlib.h>
#include <string.h>

const GUID wsx__ext_guids[WSX_EXT_COUNT] = {
    WSAID_ACCEPTEX,     WSAID_GETACCEPTEXSOCKADDRS, WSAID_CONNECTEX,  WSAID_DISCONNECTEX,
    WSAID_TRANSMITFILE, WSAID_TRANSMITPACKETS,      WSAID_WSARECVMSG, WSAID_WSASENDMSG,
};

static const char *const ext_names[WSX_EXT_COUNT] = {
    "AcceptEx",     "GetAcceptExSockaddrs", "ConnectEx",  "DisconnectEx",
    "TransmitFile", "TransmitPackets",      "WSARecvMsg", "WSASendMsg",
};

/* Stubs stand in for functions a provider lacks: a call fails cleanly instead of jumping to NULL.
 */
static BOOL PASCAL stub_acceptex(SOCKET l, SOCKET a, PVOID b, DWORD n, DWORD ll, DWORD rl,
                                 LPDWORD got, LPOVERLAPPED ov)
{
    (void)l, (void)a, (void)b, (void)n, (void)ll, (void)rl, (void)got, (void)ov;
    WSASetLastError(WSAEOPNOTSUPP);
    return FALSE;
}

static VOID PASCAL stub_getacceptexsockaddrs(PVOID b, DWORD n, DWORD ll, DWORD rl,
                                             struct sockaddr **local, LPINT local_len,
                                             struct sockaddr **remote, LPINT remote_len)
{
    (void)b, (void)n, (void)ll, (void)rl;
    *local = NULL;
    *remote = NULL;
    *local_len = 0;
    *remote_len = 0;
}

static BOOL PASCAL stub_connectex(SOCKET s, const struct sockaddr *sa, int len, PVOID b, DWORD n,
                                  LPDWORD sent, LPOVERLAPPED ov)
{
    (void)s, (void)sa, (void)len, (void)b, (void)n, (void)sent, (void)ov;
    WSASetLastError(WSAEOPNOTSUPP);
    return FALSE;
}

static BOOL PASCAL stub_disconnectex(SOCKET s, LPOVERLAPPED ov, DWORD flags, DWORD reserved)
{
    (void)s, (void)ov, (void)flags, (void)reserved;
    WSASetLastError(WSAEOPNOTSUPP);
    return FALSE;
}

static BOOL PASCAL stub_transmitfile(SOCKET s, HANDLE f, DWORD n, DWORD per_send, LPOVERLAPPED ov,
                                     LPTRANSMIT_FILE_BUFFERS tb, DWORD flags)
{
    (void)s, (void)f, (void)n, (void)per_send, (void)ov, (void)tb, (void)flags;
    WSASetLastError(WSAEOPNOTSUPP);
    return FALSE;
}

static BOOL PASCAL stub_transmitpackets(SOCKET s, LPTRANSMIT_PACKETS_ELEMENT el, DWORD count,
                                        DWORD per_send, LPOVERLAPPED ov, DWORD flags)
{
    (void)s, (void)el, (void)count, (void)per_send, (void)ov, (void)flags;
    WSASetLastError(WSAEOPNOTSUPP);
    return FALSE;
}

static INT PASCAL stub_wsarecvmsg(SOCKET s, LPWSAMSG msg, LPDWORD got, LPWSAOVERLAPPED ov,
                                  LPWSAOVERLAPPED_COMPLETION_ROUTINE cr)
{
    (void)s, (void)msg, (void)got, (void)ov, (void)cr;
    WSASetLastError(WSAEOPNOTSUPP);
    return SOCKET_ERROR;
}

static INT WSAAPI stub_wsasendmsg(SOCKET s, LPWSAMSG msg, DWORD flags, LPDWORD sent,
                                  LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE cr)
{
    (void)s, (void)msg, (void)flags, (void)sent, (void)ov, (void)cr;
    WSASetLastError(WSAEOPNOTSUPP);
    return SOCKET_ERROR;
}

/* Function pointers of different types cannot share an array portably (C11 6.3.2.3), so each
 * slot is loaded into a void * and converted through this switch. */
static void ext_set(wsx_ext *t, int id, void *fn)
{
    switch (id) {
    case WSX_EXT_ACCEPTEX:
        t->AcceptEx = fn ? (LPFN_ACCEPTEX)(INT_PTR)fn : stub_acceptex;
        break;
    case WSX_EXT_GETACCEPTEXSOCKADDRS:
        t->GetAcceptExSockaddrs =
            fn ? (LPFN_GETACCEPTEXSOCKADDRS)(INT_PTR)fn : stub_getacceptexsockaddrs;
        break;
    case WSX_EXT_CONNECTEX:
        t->ConnectEx = fn ? (LPFN_CONNECTEX)(INT_PTR)fn : stub_connectex;
        break;
    case WSX_EXT_DISCONNECTEX:
        t->DisconnectEx = fn ? (LPFN_DISCONNECTEX)(INT_PTR)fn : stub_disconnectex;
        break;
    case WSX_EXT_TRANSMITFILE:
        t->TransmitFile = fn ? (LPFN_TRANSMITFILE)(INT_PTR)fn : stub_transmitfile;
        break;
    case WSX_EXT_TRANSMITPACKETS:
        t->TransmitPackets = fn ? (LPFN_TRANSMITPACKETS)(INT_PTR)fn : stub_transmitpackets;
        break;
    case WSX_EXT_WSARECVMSG:
        t->WSARecvMsg = fn ? (LPFN_WSARECVMSG)(INT_PTR)fn : stub_wsarecvmsg;
        break;
    case WSX_EXT_WSASENDMSG:
        t->WSASendMsg = fn ? (LPFN_WSASENDMSG)(INT_PTR)fn : stub_wsasendmsg;
        break;
    default:
        break;
    }
}

int wsx__ext_load(SOCKET s, const GUID *guids, wsx_ext *out)
{
    int first_error = 0;

    out->missing = 0;
    for (int id = 0; id < WSX_EXT_COUNT; id++) {
        GUID guid = guids[id];
        void *fn = NULL;
        DWORD got = 0;

        out->missing_error[id] = 0;
        if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, &fn, sizeof fn,
                     &got, NULL, NULL) != 0 ||
            got != sizeof fn || fn == NULL) {
            int err = WSAGetLastError();
            if (err == 0)
                err = WSAEOPNOTSUPP;
            out->missing |= WSX_EXT_BIT(id);
            out->missing_error[id] = err;
            if (first_error == 0)
                first_error = err;
            fn = NULL;
        }
        ext_set(out, id, fn);
    }
    return first_error;
}

int wsx__ext_socket_error(const wsx_ext *e)
{
    for (int id = 0; id < WSX_EXT_COUNT; id++) {
        int err = e->missing_error[id];
        /* A provider without the function answers WSAEOPNOTSUPP, or WSAEINVAL for a GUID it
         * does not know; anything else (WSAENOTSOCK: closed meanwhile; WSAENETDOWN) is the
         * socket's or the moment's, and must not be cached for the provider. */
        if ((e->missing & WSX_EXT_BIT(id)) && err != WSAEOPNOTSUPP && err != WSAEINVAL)
            return err;
    }
    return 0;
}

/* Tables are immutable once published and never freed, so a returned pointer stays valid; the
 * lock only guards the list links. A process sees a handful of providers, so a list is enough. */
typedef struct ext_entry {
    struct ext_entry *next;
    wsx_ext ext;
} ext_entry;

static SRWLOCK ext_lock = SRWLOCK_INIT;
static ext_entry *ext_head;

static const wsx_ext *ext_find(const WSAPROTOCOL_INFOW *pi)
{
    for (ext_entry *e = ext_head; e; e = e->next) {
        if (e->ext.af == pi->iAddressFamily && e->ext.type == pi->iSocketType &&
            e->ext.protocol == pi->iProtocol &&
            memcmp(&e->ext.provider, &pi->ProviderId, sizeof(GUID)) == 0)
            return &e->ext;
    }
    return NULL;
}

int wsx_ext_get(SOCKET s, const wsx_ext **out)
{
    WSAPROTOCOL_INFOW pi;
    int len = sizeof pi;
    const wsx_ext *found;
    ext_entry *fresh;
    int err;

    if (out == NULL)
        return WSAEFAULT;
    *out = NULL;
    if (s == INVALID_SOCKET)
        return WSAENOTSOCK;
    if (getsockopt(s, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&pi, &len) != 0)
        return WSAGetLastError();

    AcquireSRWLockShared(&ext_lock);
    found = ext_find(&pi);
    ReleaseSRWLockShared(&ext_lock);
    if (found) {
        *out = found;
        return 0;
    }

    /* Load outside the lock: WSAIoctl is a provider call. */
    fresh = calloc(1, sizeof *fresh);
    if (fresh == NULL)
        return WSAENOBUFS;
    fresh->ext.af = pi.iAddressFamily;
    fresh->ext.type = pi.iSocketType;
    fresh->ext.protocol = pi.iProtocol;
    fresh->ext.provider = pi.ProviderId;
    wsx__ext_load(s, wsx__ext_guids, &fresh->ext);
    if ((err = wsx__ext_socket_error(&fresh->ext)) != 0) {
        free(fresh); /* this socket's failure, not the provider's: the next socket asks again */
        return err;
    }

    AcquireSRWLockExclusive(&ext_lock);
    found = ext_find(&pi);
    if (found == NULL) {
        fresh->next = ext_head;
        ext_head = fresh;
        found = &fresh->ext;
        fresh = NULL;
    }
    ReleaseSRWLockExclusive(&ext_lock);
    free(fresh);
    *out = found;
    return 0;
}

int wsx_ext_require(const wsx_ext *ext, unsigned mask, const char **missing_name)
{
    unsigned absent;

    if (missing_name)
        *missing_name = NULL;
    if (ext == NULL)
        return WSAEFAULT;
    absent = ext->missing & mask;
    if (absent == 0)
        return 0;
    for (int id = 0; id < WSX_EXT_COUNT; id++) {
        if (absent & WSX_EXT_BIT(id)) {
            if (missing_name)
                *missing_name = ext_names[id];
            break;
        }
    }
    return WSAEOPNOTSUPP;
}

const char *wsx_ext_name(wsx_ext_id id)
{
    if ((int)id < 0 || id >= WSX_EXT_COUNT)
        return "?";
    return ext_names[id];
}
