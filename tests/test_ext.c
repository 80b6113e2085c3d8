#include "helpers.h"

#include <stdio.h>

TestSuite(ext, .init = t_startup, .timeout = 30);

Test(ext, every_function_loads_for_tcp_and_udp)
{
    static const int afs[] = {AF_INET, AF_INET6};
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM};

    for (size_t i = 0; i < 2; i++) {
        for (size_t j = 0; j < 2; j++) {
            SOCKET s = t_socket(afs[i], types[j]);
            const wsx_ext *x = NULL;
            const char *missing = "unset";

            cr_assert_eq(wsx_ext_get(s, &x), 0);
            cr_assert_not_null(x);
            cr_assert_eq(x->af, afs[i]);
            cr_assert_eq(x->type, types[j]);
            if (t_on_wine()) {
                /* Wine 8.0 has no TransmitPackets (docs/semantics.md): wsx must say so. */
                cr_assert_eq(x->missing, WSX_EXT_BIT(WSX_EXT_TRANSMITPACKETS), "mask %#x",
                             x->missing);
                cr_assert_eq(wsx_ext_require(x, WSX_EXT_ALL, &missing), WSAEOPNOTSUPP);
                cr_assert_str_eq(missing, "TransmitPackets");
                cr_assert_eq(wsx_ext_require(x, WSX_EXT_ALL & ~x->missing, &missing), 0);
            } else {
                cr_assert_eq(x->missing, 0u, "missing mask %#x", x->missing);
                cr_assert_eq(wsx_ext_require(x, WSX_EXT_ALL, &missing), 0);
                cr_assert_null(missing);
            }
            closesocket(s);
        }
    }
}

/* The cache returns one table per provider kind, and its pointers are the provider's. */
Test(ext, cache_gives_the_same_table)
{
    SOCKET a = t_socket(AF_INET, SOCK_STREAM), b = t_socket(AF_INET, SOCK_STREAM);
    SOCKET c = t_socket(AF_INET6, SOCK_STREAM);
    const wsx_ext *xa, *xb, *xc;
    GUID guid = WSAID_CONNECTEX;
    LPFN_CONNECTEX direct = NULL;
    DWORD got = 0;

    cr_assert_eq(wsx_ext_get(a, &xa), 0);
    cr_assert_eq(wsx_ext_get(b, &xb), 0);
    cr_assert_eq(wsx_ext_get(c, &xc), 0);
    cr_assert_eq(xa, xb, "same (af, type, protocol, provider): same table");
    cr_assert_neq(xa, xc, "IPv6 is another provider entry");
    cr_assert_eq(WSAIoctl(b, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, &direct,
                          sizeof direct, &got, NULL, NULL),
                 0);
    cr_assert(xa->ConnectEx == direct, "cached ConnectEx is the provider's");
    closesocket(a);
    closesocket(b);
    closesocket(c);
}

typedef struct race {
    HANDLE go;
    const wsx_ext *got;
    int err;
} race;

static DWORD WINAPI race_fn(void *arg)
{
    race *r = arg;
    SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    WaitForSingleObject(r->go, INFINITE);
    r->err = wsx_ext_get(s, &r->got);
    closesocket(s);
    return 0;
}

/* Eight threads fill an empty cache at once: all must end up with the one published table. */
Test(ext, concurrent_first_use)
{
    enum { N = 8 };
    race r[N];
    HANDLE th[N];
    HANDLE go = CreateEventW(NULL, TRUE, FALSE, NULL);

    for (int i = 0; i < N; i++) {
        r[i].go = go;
        r[i].got = NULL;
        r[i].err = -1;
        th[i] = CreateThread(NULL, 0, race_fn, &r[i], 0, NULL);
        cr_assert_not_null(th[i]);
    }
    SetEvent(go);
    cr_assert_eq(WaitForMultipleObjects(N, th, TRUE, 10000), WAIT_OBJECT_0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(r[i].err, 0);
        cr_assert_eq(r[i].got, r[0].got, "thread %d got another table", i);
        CloseHandle(th[i]);
    }
}

Test(ext, bad_sockets_and_arguments)
{
    SOCKET s = t_socket(AF_INET, SOCK_STREAM);
    const wsx_ext *x = (const wsx_ext *)&x;

    closesocket(s);
    cr_assert_eq(wsx_ext_get(s, &x), WSAENOTSOCK);
    cr_assert_null(x, "no table on error");
    cr_assert_eq(wsx_ext_get(INVALID_SOCKET, &x), WSAENOTSOCK);
    cr_assert_eq(wsx_ext_get(s, NULL), WSAEFAULT);
    cr_assert_eq(wsx_ext_require(NULL, WSX_EXT_ALL, NULL), WSAEFAULT);
    cr_assert_str_eq(wsx_ext_name(WSX_EXT_TRANSMITPACKETS), "TransmitPackets");
    cr_assert_str_eq(wsx_ext_name(WSX_EXT_COUNT), "?");
}

/* A provider that lacks a function: simulated with a GUID no provider knows. The slot holds a
 * stub that fails cleanly, and wsx_ext_require names the function. */
Test(ext, missing_function_is_named_and_stubbed)
{
    static const GUID nobody = {0x12345678, 0x1234, 0x1234, {1, 2, 3, 4, 5, 6, 7, 8}};
    GUID guids[WSX_EXT_COUNT];
    wsx_ext x;
    SOCKET s = t_socket(AF_INET, SOCK_STREAM);
    const char *name = NULL;
    TRANSMIT_PACKETS_ELEMENT el;

    memcpy(guids, wsx__ext_guids, sizeof guids);
    guids[WSX_EXT_TRANSMITPACKETS] = nobody;
    memset(&x, 0, sizeof x);
    cr_assert_neq(wsx__ext_load(s, guids, &x), 0);
    cr_assert_eq(x.missing, WSX_EXT_BIT(WSX_EXT_TRANSMITPACKETS));
    cr_assert_neq(x.missing_error[WSX_EXT_TRANSMITPACKETS], 0);
    cr_assert_not_null(x.TransmitPackets, "never NULL");
    cr_assert_eq(wsx_ext_require(&x, WSX_EXT_ALL, &name), WSAEOPNOTSUPP);
    cr_assert_str_eq(name, "TransmitPackets");
    cr_assert_eq(wsx_ext_require(&x, WSX_EXT_BIT(WSX_EXT_ACCEPTEX), &name), 0);
    memset(&el, 0, sizeof el);
    WSASetLastError(0);
    cr_assert_eq(x.TransmitPackets(s, &el, 1, 0, NULL, 0), FALSE);
    cr_assert_eq(WSAGetLastError(), WSAEOPNOTSUPP);
    cr_assert_eq(wsx__ext_socket_error(&x), 0, "the provider's answer (%d): cacheable",
                 x.missing_error[WSX_EXT_TRANSMITPACKETS]);
    closesocket(s);
    /* What the socket says is not the provider's: a load that failed with WSAENOTSOCK (the socket
     * closed meanwhile: Windows' answer; Wine 8.0 hands out the pointers on a closed socket too)
     * is not cached, one that lacks a function (WSAEOPNOTSUPP, WSAEINVAL) is. */
    x.missing_error[WSX_EXT_TRANSMITPACKETS] = WSAEINVAL;
    cr_assert_eq(wsx__ext_socket_error(&x), 0);
    x.missing |= WSX_EXT_BIT(WSX_EXT_CONNECTEX);
    x.missing_error[WSX_EXT_CONNECTEX] = WSAENOTSOCK;
    cr_assert_eq(wsx__ext_socket_error(&x), WSAENOTSOCK);
}

/* The loaded pointers work: the functions the echo server does not use, called for real. */
Test(ext, sendmsg_recvmsg_udp)
{
    wsx_sockaddr ra;
    SOCKET r = t_bound("127.0.0.1:0", SOCK_DGRAM, &ra);
    SOCKET w = t_socket(AF_INET, SOCK_DGRAM);
    const wsx_ext *x;
    char out[] = "datagram", in[32];
    WSABUF wb = {sizeof out, out}, rb = {sizeof in, in};
    WSAMSG m;
    DWORD n = 0;

    cr_assert_eq(wsx_ext_get(w, &x), 0);
    memset(&m, 0, sizeof m);
    m.name = (struct sockaddr *)&ra.ss;
    m.namelen = ra.len;
    m.lpBuffers = &wb;
    m.dwBufferCount = 1;
    cr_assert_eq(x->WSASendMsg(w, &m, 0, &n, NULL, NULL), 0, "WSASendMsg: %d", WSAGetLastError());
    cr_assert_eq(n, sizeof out);

    memset(&m, 0, sizeof m);
    m.lpBuffers = &rb;
    m.dwBufferCount = 1;
    n = 0;
    cr_assert_eq(x->WSARecvMsg(r, &m, &n, NULL, NULL), 0, "WSARecvMsg: %d", WSAGetLastError());
    cr_assert_eq(n, sizeof out);
    cr_assert_str_eq(in, "datagram");
    closesocket(r);
    closesocket(w);
}

Test(ext, transmitfile_transmitpackets_disconnectex)
{
    SOCKET srv, cli = t_pair("127.0.0.1:0", &srv);
    const wsx_ext *x;
    char path[MAX_PATH], dir[MAX_PATH], got[64];
    HANDLE f;
    DWORD n;
    TRANSMIT_FILE_BUFFERS tb = {"head-", 5, "-tail", 5};
    TRANSMIT_PACKETS_ELEMENT el[2];

    cr_assert_eq(wsx_ext_get(srv, &x), 0);
    cr_assert(GetTempPathA(sizeof dir, dir));
    cr_assert(GetTempFileNameA(dir, "wsx", 0, path));
    f = CreateFileA(path, GENERIC_READ | GENERIC_WRITE, 0, NULL, CREATE_ALWAYS,
                    FILE_FLAG_DELETE_ON_CLOSE, NULL);
    cr_assert_neq(f, INVALID_HANDLE_VALUE);
    cr_assert(WriteFile(f, "0123456789", 10, &n, NULL));
    cr_assert_eq(SetFilePointer(f, 2, NULL, FILE_BEGIN), 2);

    /* 4 bytes from the file position (2): "2345" between head and tail. */
    cr_assert(x->TransmitFile(srv, f, 4, 0, NULL, &tb, 0), "TransmitFile: %d", WSAGetLastError());
    t_recv_all(cli, got, 14);
    cr_assert_eq(memcmp(got, "head-2345-tail", 14), 0);

    memset(el, 0, sizeof el);
    el[0].dwElFlags = TP_ELEMENT_MEMORY;
    el[0].cLength = 3;
    el[0].pBuffer = "abc";
    el[1].dwElFlags = TP_ELEMENT_MEMORY;
    el[1].cLength = 3;
    el[1].pBuffer = "def";
    if (x->missing & WSX_EXT_BIT(WSX_EXT_TRANSMITPACKETS)) {
        cr_assert(t_on_wine(), "only Wine 8.0 is known to lack TransmitPackets");
        cr_assert_eq(x->TransmitPackets(srv, el, 2, 0, NULL, 0), FALSE);
        cr_assert_eq(WSAGetLastError(), WSAEOPNOTSUPP, "the stub fails cleanly");
    } else {
        cr_assert(x->TransmitPackets(srv, el, 2, 0, NULL, 0), "TransmitPackets: %d",
                  WSAGetLastError());
        t_recv_all(cli, got, 6);
        cr_assert_eq(memcmp(got, "abcdef", 6), 0);
    }

    /* DisconnectEx without reuse: the peer sees an orderly end of stream. */
    cr_assert(x->DisconnectEx(srv, NULL, 0, 0), "DisconnectEx: %d", WSAGetLastError());
    cr_assert_eq(recv(cli, got, sizeof got, 0), 0);
    CloseHandle(f);
    closesocket(srv);
    closesocket(cli);
}
