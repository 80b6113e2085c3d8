#include "helpers.h"

#include <stdio.h>

TestSuite(addr, .init = t_startup, .timeout = 30);

typedef struct accept_case {
    SOCKET listener, accepted, client;
    wsx_sockaddr listen_addr, client_addr;
    const wsx_ext *ext;
    HANDLE port;
    OVERLAPPED aov, cov;
    char buf[WSX_ACCEPT_BUF_LEN(64)];
} accept_case;

/* Post AcceptEx(initial bytes) on a listener at `listen_text`; ConnectEx from a client bound to
 * `client_text` that sends `data` with the connect. Both completions are dequeued. */
static void accept_run(accept_case *t, const char *listen_text, const char *client_text,
                       const char *data, DWORD initial)
{
    DWORD n = 0;
    OVERLAPPED_ENTRY e;
    int seen = 0;

    memset(t, 0, sizeof *t);
    t->listener = t_listener(listen_text, &t->listen_addr);
    cr_assert_eq(wsx_ext_get(t->listener, &t->ext), 0);
    t->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    cr_assert_not_null(CreateIoCompletionPort((HANDLE)t->listener, t->port, 1, 0));
    t->accepted = t_socket(t->listen_addr.ss.ss_family, SOCK_STREAM);
    memset(t->buf, 0xAB, sizeof t->buf); /* garbage: wsx must not trust unwritten areas */
    wsx_accept_addrs_clear(t->buf, initial);
    t_assert_posted(t->ext->AcceptEx(t->listener, t->accepted, t->buf, initial, WSX_ACCEPT_ADDR_LEN,
                                     WSX_ACCEPT_ADDR_LEN, &n, &t->aov),
                    "AcceptEx");

    t->client = t_bound(client_text, SOCK_STREAM, &t->client_addr);
    cr_assert_not_null(CreateIoCompletionPort((HANDLE)t->client, t->port, 2, 0));
    {
        /* Connect to the listener's port on the client's own loopback family. */
        wsx_sockaddr to = t->client_addr;
        if (to.ss.ss_family == AF_INET) {
            ((SOCKADDR_IN *)&to.ss)->sin_port =
                htons(wsx_addr_port((struct sockaddr *)&t->listen_addr.ss));
            ((SOCKADDR_IN *)&to.ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        } else {
            ((SOCKADDR_IN6 *)&to.ss)->sin6_port =
                htons(wsx_addr_port((struct sockaddr *)&t->listen_addr.ss));
            ((SOCKADDR_IN6 *)&to.ss)->sin6_addr = in6addr_loopback;
        }
        t_assert_posted(t->ext->ConnectEx(t->client, (struct sockaddr *)&to.ss, to.len,
                                          (void *)data, (DWORD)strlen(data), &n, &t->cov),
                        "ConnectEx");
    }
    while (seen != 3) {
        e = t_dequeue(t->port, 5000);
        cr_assert(e.lpCompletionKey == 1 || e.lpCompletionKey == 2);
        cr_assert_eq(e.lpOverlapped, e.lpCompletionKey == 1 ? &t->aov : &t->cov);
        cr_assert_eq(wsx_status_from_entry(&e, 0).wsa, 0);
        cr_assert_eq(e.dwNumberOfBytesTransferred,
                     e.lpCompletionKey == 1 && initial == 0 ? 0 : strlen(data));
        seen |= (int)e.lpCompletionKey;
    }
    cr_assert_eq(setsockopt(t->accepted, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (char *)&t->listener,
                            sizeof t->listener),
                 0);
}

static void accept_done(accept_case *t)
{
    closesocket(t->accepted);
    closesocket(t->client);
    closesocket(t->listener);
    CloseHandle(t->port);
}

static void format(const wsx_sockaddr *a, char *out)
{
    cr_assert_eq(wsx_addr_format((const struct sockaddr *)&a->ss, a->len, out, WSX_ADDRSTRLEN), 0);
}

Test(addr, accept_ipv4_initial_data)
{
    accept_case t;
    wsx_sockaddr local, remote;
    char l[WSX_ADDRSTRLEN], r[WSX_ADDRSTRLEN], want[WSX_ADDRSTRLEN];

    accept_run(&t, "127.0.0.1:0", "127.0.0.1:0", "hello", 64);
    cr_assert_eq(memcmp(t.buf, "hello", 5), 0, "initial data is at the start of the buffer");
    /* INVALID_SOCKET: no fallback, so this proves the buffer itself was decoded. */
    cr_assert_eq(wsx_accept_addrs(t.ext, INVALID_SOCKET, t.buf, 64, &local, &remote), 0);
    cr_assert_eq(local.len, (int)sizeof(SOCKADDR_IN));
    cr_assert_eq(remote.len, (int)sizeof(SOCKADDR_IN));
    format(&local, l);
    format(&remote, r);
    format(&t.listen_addr, want);
    cr_assert_str_eq(l, want);
    format(&t.client_addr, want);
    cr_assert_str_eq(r, want);
    accept_done(&t);
}

Test(addr, accept_ipv6)
{
    accept_case t;
    wsx_sockaddr local, remote;
    char r[WSX_ADDRSTRLEN], want[WSX_ADDRSTRLEN];

    accept_run(&t, "[::1]:0", "[::1]:0", "x", 1);
    cr_assert_eq(wsx_accept_addrs(t.ext, INVALID_SOCKET, t.buf, 1, &local, &remote), 0);
    cr_assert_eq(local.ss.ss_family, AF_INET6);
    cr_assert_eq(remote.len, (int)sizeof(SOCKADDR_IN6));
    cr_assert_eq(wsx_addr_port((struct sockaddr *)&local.ss),
                 wsx_addr_port((struct sockaddr *)&t.listen_addr.ss));
    format(&remote, r);
    format(&t.client_addr, want);
    cr_assert_str_eq(r, want);
    cr_assert_eq(strncmp(r, "[::1]:", 6), 0, "%s", r);
    accept_done(&t);
}

Test(addr, accept_dual_stack_ipv4_client)
{
    accept_case t;
    wsx_sockaddr local, remote;
    char r[WSX_ADDRSTRLEN];
    char want[WSX_ADDRSTRLEN];

    accept_run(&t, "[::]:0", "127.0.0.1:0", "dual", 16);
    cr_assert_eq(wsx_accept_addrs(t.ext, INVALID_SOCKET, t.buf, 16, &local, &remote), 0);
    cr_assert_eq(remote.ss.ss_family, AF_INET6, "an IPv4 client on [::] is an IPv4-mapped IPv6");
    format(&remote, r);
    snprintf(want, sizeof want, "[::ffff:127.0.0.1]:%u",
             wsx_addr_port((struct sockaddr *)&t.client_addr.ss));
    cr_assert_str_eq(r, want);
    accept_done(&t);
}

Test(addr, accept_without_initial_data)
{
    accept_case t;
    wsx_sockaddr local, remote;

    accept_run(&t, "127.0.0.1:0", "127.0.0.1:0", "later", 0);
    cr_assert_eq(wsx_accept_addrs(t.ext, INVALID_SOCKET, t.buf, 0, &local, &remote), 0);
    cr_assert_eq(wsx_addr_port((struct sockaddr *)&remote.ss),
                 wsx_addr_port((struct sockaddr *)&t.client_addr.ss));
    accept_done(&t);
}

/* Unwritten areas (zeroed by wsx_accept_addrs_clear) are refused, and the socket fallback
 * gives the same answer the buffer would have. Wine leaves them unwritten after a client FIN
 * on an initial-data accept (docs/semantics.md, "0-byte accept"). */
Test(addr, unwritten_areas_fall_back_to_the_socket)
{
    accept_case t;
    wsx_sockaddr local, remote;

    accept_run(&t, "127.0.0.1:0", "127.0.0.1:0", "abc", 64);
    wsx_accept_addrs_clear(t.buf, 64);
    cr_assert_eq(wsx_accept_addrs(t.ext, INVALID_SOCKET, t.buf, 64, &local, &remote), WSAEFAULT);
    cr_assert_eq(wsx_accept_addrs(t.ext, t.accepted, t.buf, 64, &local, &remote), 0);
    cr_assert_eq(wsx_addr_port((struct sockaddr *)&remote.ss),
                 wsx_addr_port((struct sockaddr *)&t.client_addr.ss));
    cr_assert_eq(wsx_addr_port((struct sockaddr *)&local.ss),
                 wsx_addr_port((struct sockaddr *)&t.listen_addr.ss));
    cr_assert_eq(wsx_accept_addrs(NULL, t.accepted, t.buf, 64, &local, &remote), WSAEINVAL);
    cr_assert_eq(wsx_accept_addrs(t.ext, t.accepted, NULL, 64, &local, &remote), WSAEINVAL);
    accept_done(&t);
}

Test(addr, buffer_sizes)
{
    cr_assert_eq(WSX_ACCEPT_ADDR_LEN, sizeof(SOCKADDR_STORAGE) + 16);
    cr_assert_geq(WSX_ACCEPT_ADDR_LEN, sizeof(SOCKADDR_IN6) + 16);
    cr_assert_eq(WSX_ACCEPT_BUF_LEN(0), 2 * (sizeof(SOCKADDR_STORAGE) + 16));
    cr_assert_eq(WSX_ACCEPT_BUF_LEN(4096), 4096 + 2 * (sizeof(SOCKADDR_STORAGE) + 16));
    cr_assert_eq(wsx_addr_family_len(AF_INET), (int)sizeof(SOCKADDR_IN));
    cr_assert_eq(wsx_addr_family_len(AF_INET6), (int)sizeof(SOCKADDR_IN6));
    cr_assert_eq(wsx_addr_family_len(AF_UNSPEC), 0);
}

Test(addr, parse_and_format_round_trip)
{
    static const char *const good[] = {
        "127.0.0.1:7007",
        "0.0.0.0:0",
        "255.255.255.255:65535",
        "[::1]:7007",
        "[::]:0",
        "[fe80::1%3]:80",
        "[::ffff:127.0.0.1]:9",
        "[2001:db8::5]:443",
        "[fe80::1%4294967295]:80",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        wsx_sockaddr a;
        char out[WSX_ADDRSTRLEN];
        cr_assert_eq(wsx_addr_parse(good[i], &a), 0, "%s", good[i]);
        cr_assert_eq(a.len, wsx_addr_family_len(a.ss.ss_family));
        cr_assert_eq(wsx_addr_format((struct sockaddr *)&a.ss, a.len, out, sizeof out), 0);
        cr_assert_str_eq(out, good[i]);
    }
}

Test(addr, parse_rejects)
{
    static const char *const bad[] = {
        "",
        ":80",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:8x",
        "1.2.3:80",
        "::1:80",
        "[::1]",
        "[::1]80",
        "[::1:80",
        "[]:80",
        "[fe80::1%x]:80",
        "[fe80::1%4294967296]:80", /* one over 32 bits: wrapped to 0 once */
        "[fe80::1%9999999999]:80",
        "localhost:80",
        "127.0.0.1:99999999999999",
        " 127.0.0.1:80",
        "[1.2.3.4]:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wsx_sockaddr a;
        cr_assert_eq(wsx_addr_parse(bad[i], &a), WSAEINVAL, "'%s' must be rejected", bad[i]);
        cr_assert_eq(a.len, 0);
    }
    cr_assert_eq(wsx_addr_parse(NULL, &(wsx_sockaddr){0}), WSAEINVAL);
    cr_assert_eq(wsx_addr_parse("1.2.3.4:5", NULL), WSAEINVAL);
}

Test(addr, format_checks_sizes)
{
    wsx_sockaddr a = t_addr("[2001:db8::1234:5678]:65535");
    char out[WSX_ADDRSTRLEN];
    SOCKADDR_STORAGE unknown;

    cr_assert_eq(wsx_addr_format((struct sockaddr *)&a.ss, a.len, out, 10), WSAEFAULT);
    cr_assert_str_eq(out, "");
    cr_assert_eq(
        wsx_addr_format((struct sockaddr *)&a.ss, (int)sizeof(SOCKADDR_IN), out, sizeof out),
        WSAEFAULT, "a length too short for the family");
    memset(&unknown, 0, sizeof unknown);
    unknown.ss_family = AF_UNIX;
    cr_assert_eq(wsx_addr_format((struct sockaddr *)&unknown, sizeof unknown, out, sizeof out),
                 WSAEAFNOSUPPORT);
    cr_assert_eq(wsx_addr_format(NULL, 0, out, sizeof out), WSAEFAULT);
}
