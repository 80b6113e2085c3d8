/* Loopback helpers for the Criterion tests: each test runs in its own process under Wine. */
#ifndef WSX_TEST_HELPERS_H
#define WSX_TEST_HELPERS_H

#include "internal.h"

#include <criterion/criterion.h>
#include <string.h>

/* Wine exports wine_get_version from ntdll; Windows does not. Tests that pin a behaviour where
 * Wine 8.0 differs from Windows use this, and docs/semantics.md says which. */
static inline int t_on_wine(void)
{
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    return ntdll && GetProcAddress(ntdll, "wine_get_version") != NULL;
}

static inline void t_startup(void)
{
    WSADATA wsa;
    cr_assert_eq(WSAStartup(MAKEWORD(2, 2), &wsa), 0);
}

static inline SOCKET t_socket(int af, int type)
{
    SOCKET s = WSASocketW(af, type, type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP, NULL, 0,
                          WSA_FLAG_OVERLAPPED);
    cr_assert_neq(s, INVALID_SOCKET, "WSASocketW: %d", WSAGetLastError());
    return s;
}

/* text like "127.0.0.1:0" or "[::1]:0" */
static inline wsx_sockaddr t_addr(const char *text)
{
    wsx_sockaddr a;
    cr_assert_eq(wsx_addr_parse(text, &a), 0, "parse %s", text);
    return a;
}

static inline SOCKET t_bound(const char *text, int type, wsx_sockaddr *bound)
{
    wsx_sockaddr a = t_addr(text);
    SOCKET s = t_socket(a.ss.ss_family, type);
    if (a.ss.ss_family == AF_INET6 &&
        IN6_IS_ADDR_UNSPECIFIED(&((SOCKADDR_IN6 *)&a.ss)->sin6_addr)) {
        DWORD off = 0;
        cr_assert_eq(setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (char *)&off, sizeof off), 0);
    }
    cr_assert_eq(bind(s, (struct sockaddr *)&a.ss, a.len), 0, "bind %s: %d", text,
                 WSAGetLastError());
    if (bound) {
        bound->len = (int)sizeof bound->ss;
        cr_assert_eq(getsockname(s, (struct sockaddr *)&bound->ss, &bound->len), 0);
    }
    return s;
}

static inline SOCKET t_listener(const char *text, wsx_sockaddr *bound)
{
    SOCKET s = t_bound(text, SOCK_STREAM, bound);
    cr_assert_eq(listen(s, SOMAXCONN), 0);
    return s;
}

/* A blocking connected pair: *server is the accepted side. */
static inline SOCKET t_pair(const char *text, SOCKET *server)
{
    wsx_sockaddr a;
    SOCKET l = t_listener(text, &a);
    SOCKET c = t_socket(a.ss.ss_family, SOCK_STREAM);
    cr_assert_eq(connect(c, (struct sockaddr *)&a.ss, a.len), 0, "connect: %d", WSAGetLastError());
    *server = accept(l, NULL, NULL);
    cr_assert_neq(*server, INVALID_SOCKET);
    closesocket(l);
    return c;
}

static inline void t_recv_all(SOCKET s, char *buf, int len)
{
    int got = 0;
    while (got < len) {
        int n = recv(s, buf + got, len - got, 0);
        cr_assert_gt(n, 0, "recv after %d of %d bytes: %d (%d)", got, len, n, WSAGetLastError());
        got += n;
    }
}

/* Dequeue one completion within ms; fails the test on timeout. */
static inline OVERLAPPED_ENTRY t_dequeue(HANDLE port, DWORD ms)
{
    OVERLAPPED_ENTRY e;
    ULONG n = 0;
    memset(&e, 0, sizeof e);
    cr_assert(GetQueuedCompletionStatusEx(port, &e, 1, &n, ms, FALSE),
              "no completion within %lu ms (%lu)", ms, GetLastError());
    cr_assert_eq(n, 1);
    return e;
}

static inline void t_assert_posted(BOOL ok, const char *what)
{
    cr_assert(ok || WSAGetLastError() == WSA_IO_PENDING, "%s: %d", what, WSAGetLastError());
}

#endif
