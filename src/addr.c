#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int wsx_addr_family_len(int af)
{
    switch (af) {
    case AF_INET:
        return (int)sizeof(SOCKADDR_IN);
    case AF_INET6:
        return (int)sizeof(SOCKADDR_IN6);
    default:
        return 0;
    }
}

void wsx_accept_addrs_clear(void *buf, DWORD initial)
{
    if (buf)
        memset((char *)buf + initial, 0, 2 * WSX_ACCEPT_ADDR_LEN);
}

/* A decoded address is trusted only if it lies inside its area and has its family's size. */
static int area_valid(const char *area, const struct sockaddr *sa, int len)
{
    const char *p = (const char *)sa;
    int want;

    if (sa == NULL || p < area || p >= area + WSX_ACCEPT_ADDR_LEN)
        return 0;
    if (len <= 0 || len > (int)sizeof(SOCKADDR_STORAGE) || p + len > area + WSX_ACCEPT_ADDR_LEN)
        return 0;
    want = wsx_addr_family_len(sa->sa_family);
    return want != 0 && len >= want;
}

static void addr_copy(wsx_sockaddr *out, const struct sockaddr *sa, int len)
{
    memset(out, 0, sizeof *out);
    memcpy(&out->ss, sa, (size_t)len);
    out->len = len;
}

static int addrs_from_socket(SOCKET s, wsx_sockaddr *local, wsx_sockaddr *remote)
{
    memset(local, 0, sizeof *local);
    memset(remote, 0, sizeof *remote);
    local->len = (int)sizeof local->ss;
    remote->len = (int)sizeof remote->ss;
    if (getsockname(s, (struct sockaddr *)&local->ss, &local->len) != 0)
        return WSAGetLastError();
    if (getpeername(s, (struct sockaddr *)&remote->ss, &remote->len) != 0)
        return WSAGetLastError();
    return 0;
}

int wsx_accept_addrs(const wsx_ext *ext, SOCKET accepted, void *buf, DWORD initial,
                     wsx_sockaddr *local, wsx_sockaddr *remote)
{
    struct sockaddr *lsa = NULL, *rsa = NULL;
    int llen = 0, rlen = 0;
    const char *areas;

    if (ext == NULL || buf == NULL || local == NULL || remote == NULL)
        return WSAEINVAL;
    areas = (const char *)buf + initial;
    ext->GetAcceptExSockaddrs(buf, initial, WSX_ACCEPT_ADDR_LEN, WSX_ACCEPT_ADDR_LEN, &lsa, &llen,
                              &rsa, &rlen);
    if (area_valid(areas, lsa, llen) && area_valid(areas + WSX_ACCEPT_ADDR_LEN, rsa, rlen)) {
        addr_copy(local, lsa, llen);
        addr_copy(remote, rsa, rlen);
        return 0;
    }
    if (accepted == INVALID_SOCKET)
        return WSAEFAULT;
    return addrs_from_socket(accepted, local, remote);
}

int wsx_addr_format(const struct sockaddr *sa, int len, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN + 1];
    int n;

    if (sa == NULL || out == NULL || cap == 0)
        return WSAEFAULT;
    out[0] = '\0';
    if (wsx_addr_family_len(sa->sa_family) == 0)
        return WSAEAFNOSUPPORT;
    if (len < wsx_addr_family_len(sa->sa_family))
        return WSAEFAULT;
    if (sa->sa_family == AF_INET) {
        const SOCKADDR_IN *in = (const SOCKADDR_IN *)sa;
        if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host) == NULL)
            return WSAGetLastError();
        n = snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else {
        const SOCKADDR_IN6 *in6 = (const SOCKADDR_IN6 *)sa;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host) == NULL)
            return WSAGetLastError();
        if (in6->sin6_scope_id != 0)
            n = snprintf(out, cap, "[%s%%%lu]:%u", host, (unsigned long)in6->sin6_scope_id,
                         (unsigned)ntohs(in6->sin6_port));
        else
            n = snprintf(out, cap, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    }
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return WSAEFAULT;
    }
    return 0;
}

static int parse_u32(const char *s, const char *end, unsigned long max, unsigned long *out)
{
    unsigned long long v = 0; /* 10 digits fit; unsigned long is 32 bits on Windows */

    if (s == end || end - s > 10)
        return WSAEINVAL;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return WSAEINVAL;
        v = v * 10 + (unsigned)(*p - '0');
        if (v > max)
            return WSAEINVAL;
    }
    *out = (unsigned long)v;
    return 0;
}

int wsx_addr_parse(const char *text, wsx_sockaddr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon, *host_begin, *host_end, *scope = NULL;
    unsigned long port, scope_id = 0;

    if (out == NULL)
        return WSAEINVAL;
    memset(out, 0, sizeof *out);
    if (text == NULL)
        return WSAEINVAL;

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return WSAEINVAL;
        host_begin = text + 1;
        host_end = close;
        colon = close + 1;
        for (const char *p = host_begin; p < host_end; p++) {
            if (*p == '%') {
                scope = p + 1;
                host_end = p;
                break;
            }
        }
        if (scope && parse_u32(scope, close, 0xFFFFFFFFul, &scope_id) != 0)
            return WSAEINVAL;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return WSAEINVAL;
        host_begin = text;
        host_end = colon;
        for (const char *p = host_begin; p < host_end; p++)
            if (*p == ':')
                return WSAEINVAL; /* IPv6 needs brackets */
    }
    if (host_end <= host_begin || (size_t)(host_end - host_begin) >= sizeof host)
        return WSAEINVAL;
    if (parse_u32(colon + 1, colon + 1 + strlen(colon + 1), 65535, &port) != 0)
        return WSAEINVAL;
    memcpy(host, host_begin, (size_t)(host_end - host_begin));
    host[host_end - host_begin] = '\0';

    if (text[0] == '[') {
        SOCKADDR_IN6 *in6 = (SOCKADDR_IN6 *)&out->ss;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
            return WSAEINVAL;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((u_short)port);
        in6->sin6_scope_id = (ULONG)scope_id;
        out->len = (int)sizeof *in6;
    } else {
        SOCKADDR_IN *in = (SOCKADDR_IN *)&out->ss;
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
            return WSAEINVAL;
        in->sin_family = AF_INET;
        in->sin_port = htons((u_short)port);
        out->len = (int)sizeof *in;
    }
    return 0;
}

unsigned short wsx_addr_port(const struct sockaddr *sa)
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET)
        return ntohs(((const SOCKADDR_IN *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const SOCKADDR_IN6 *)sa)->sin6_port);
    return 0;
}
