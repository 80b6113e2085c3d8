#include "helpers.h"

#include <psapi.h>
#include <stdlib.h>

TestSuite(stream, .init = t_startup, .timeout = 120);

/* What one stream saw: its end, and the classified completions of each op kind. */
typedef struct ctx {
    wsx_stream *s;
    HANDLE closed;
    wsx_status why;
    volatile LONG64 bytes;
    volatile LONG completions[WSX_OP_COUNT][WSX_KIND_OTHER + 1];
    int sink;   /* count and drop data instead of echoing it */
    int inside; /* in one of this stream's callbacks (the nested-poll test) */
} ctx;

static void ctx_init(ctx *c)
{
    memset(c, 0, sizeof *c);
    c->closed = CreateEventW(NULL, TRUE, FALSE, NULL);
}

static void on_data(wsx_stream *s, wsx_buf *b)
{
    ctx *c = wsx_stream_user(s);
    InterlockedExchangeAdd64(&c->bytes, b->len - b->off);
    if (c->sink)
        wsx_buf_put(b);
    else
        wsx_stream_send_buf(s, b);
}

static void on_close(wsx_stream *s, const wsx_status *why)
{
    ctx *c = wsx_stream_user(s);
    c->why = *why;
    SetEvent(c->closed);
}

static void on_complete(wsx_stream *s, wsx_op_kind kind, const wsx_status *st)
{
    ctx *c = wsx_stream_user(s);
    InterlockedIncrement(&c->completions[kind][st->kind]);
}

static const wsx_stream_callbacks echo_cb = {on_data, NULL, on_close, on_complete, NULL};

static wsx_port *port_with_workers(int n)
{
    wsx_port *p = NULL;
    cr_assert_eq(wsx_port_create(&p, NULL), 0);
    cr_assert_eq(wsx_port_start(p, n), 0);
    return p;
}

/* A loopback pair: the server side becomes a stream, the client stays a blocking socket. */
static SOCKET open_pair(wsx_port *p, ctx *c, const wsx_stream_opts *o)
{
    SOCKET srv, cli = t_pair("127.0.0.1:0", &srv);
    cr_assert_eq(wsx_stream_open(p, srv, o, &echo_cb, c, NULL, 0, &c->s), 0);
    return cli;
}

static void wait_closed(ctx *c, DWORD ms)
{
    cr_assert_eq(WaitForSingleObject(c->closed, ms), WAIT_OBJECT_0, "stream not closed in %lu ms",
                 ms);
}

/* Destroy the port once its streams are gone (a callback may still be returning); a stream
 * that never goes (a lost count, a pin never let go) fails the test. */
static void finish(wsx_port *p)
{
    int err = 0;
    for (int i = 0; i < 200 && (err = wsx_port_destroy(p)) != 0; i++)
        Sleep(10);
    cr_assert_eq(err, 0, "the port still has streams after 2 s");
}

/* A port without workers: poll it until the stream's on_close has run (5 s at most). */
static void poll_until_closed(wsx_port *p, ctx *c)
{
    for (int i = 0; i < 100 && WaitForSingleObject(c->closed, 0) != WAIT_OBJECT_0; i++)
        wsx_port_poll(p, 50);
    wait_closed(c, 0);
}

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 7 + i / 65536) % 251);
}

/* The continuation logic itself: a short completion leaves the rest queued, in order. */
Test(stream, send_queue_partial_continuation)
{
    wsx_buf_pool *pool;
    wsx__sendq q;
    WSABUF wb[4];
    DWORD total;
    wsx_buf *b[3];

    cr_assert_eq(wsx_buf_pool_create(&pool, 10, 0), 0);
    memset(&q, 0, sizeof q);
    for (int i = 0; i < 3; i++) {
        b[i] = wsx_buf_get(pool);
        memset(b[i]->data, 'a' + i, 10);
        b[i]->len = 10;
        wsx__sendq_push(&q, b[i]);
    }
    cr_assert_eq(q.queued, 30);
    cr_assert_eq(wsx__sendq_gather(&q, wb, 4, MAXDWORD, &total), 3);
    cr_assert_eq(total, 30);
    wsx__sendq_advance(&q, 15); /* a completion for 15 of the 30 posted */
    cr_assert_eq(q.queued, 15);
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 2, "the finished buffer went back");
    cr_assert_eq(wsx__sendq_gather(&q, wb, 4, MAXDWORD, &total), 2);
    cr_assert_eq(total, 15);
    cr_assert_eq(wb[0].len, 5);
    cr_assert_eq(wb[0].buf[0], 'b', "the rest starts where the kernel stopped");
    cr_assert_eq(wb[0].buf, b[1]->data + 5);
    cr_assert_eq(wb[1].buf[0], 'c');
    cr_assert_eq(wsx__sendq_gather(&q, wb, 1, MAXDWORD, &total), 1, "gather respects its bound");
    cr_assert_eq(wsx__sendq_gather(&q, wb, 4, 7, &total), 2, "and its bound in bytes");
    cr_assert_eq(total, 7);
    cr_assert_eq(wb[1].len, 2);
    wsx__sendq_advance(&q, 15);
    cr_assert_eq(q.queued, 0);
    cr_assert_null(q.head);
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 0);
    cr_assert_eq(wsx_buf_pool_destroy(pool), 0);
}

/* 64 MiB queued at once to a client that reads slowly at first: all of it arrives, in order. */
Test(stream, send_64_mib_to_a_slow_reader)
{
    enum { TOTAL = 64 << 20 };
    wsx_port *p = port_with_workers(2);
    ctx c;
    wsx_stream_opts o = {0, 0, 1, 0, NULL};
    SOCKET cli;
    unsigned char *data = malloc(TOTAL), *got = malloc(1 << 20);
    size_t seen = 0;
    wsx_stream_info info;

    ctx_init(&c);
    c.sink = 1;
    cli = open_pair(p, &c, &o);
    for (size_t i = 0; i < TOTAL; i++)
        data[i] = pattern(i);
    cr_assert_eq(wsx_stream_send(c.s, data, TOTAL), 0);
    free(data);
    while (seen < TOTAL) {
        int n = recv(cli, (char *)got, seen < (4u << 20) ? 65536 : (1 << 20), 0);
        cr_assert_gt(n, 0, "recv after %zu bytes: %d", seen, WSAGetLastError());
        for (int i = 0; i < n; i++)
            if (got[i] != pattern(seen + (size_t)i))
                cr_assert_fail("byte %zu differs: got %u, want %u", seen + (size_t)i, got[i],
                               pattern(seen + (size_t)i));
        seen += (size_t)n;
        if (seen < (4u << 20))
            Sleep(5);
    }
    /* The client can hold every byte before the worker has taken the last send's completion,
     * which is what counts them out: wait for it (it failed 2 runs in 8 without). */
    for (int i = 0; i < 500; i++) {
        wsx_stream_get_info(c.s, &info);
        if (info.bytes_out == TOTAL && info.queued == 0)
            break;
        Sleep(10);
    }
    cr_assert_eq(info.bytes_out, TOTAL);
    cr_assert_eq(info.queued, 0);
    cr_assert_eq(wsx_stream_close(c.s), 0);
    wait_closed(&c, 5000);
    cr_assert_eq(recv(cli, (char *)got, 1, 0), 0, "FIN after the data");
    closesocket(cli);
    free(got);
    finish(p);
}

/* A peer that stops reading is reset once a send has been in flight for the port's send timeout;
 * one that reads slowly keeps its connection (each send completes well within the timeout). */
Test(stream, send_timeout_resets_a_peer_that_stopped_reading)
{
    enum { TOTAL = 16 << 20 };
    wsx_port_opts po;
    wsx_port *p = NULL;
    ctx stuck, slow;
    SOCKET cs, cl;
    char *data = malloc(TOTAL), *got = malloc(65536);
    size_t seen = 0;
    DWORD t0, took;
    int n;

    memset(&po, 0, sizeof po);
    po.send_timeout_ms = 600;
    cr_assert_eq(wsx_port_create(&p, &po), 0);
    cr_assert_eq(wsx_port_start(p, 1), 0);
    ctx_init(&stuck);
    ctx_init(&slow);
    stuck.sink = slow.sink = 1;
    cs = open_pair(p, &stuck, NULL);
    cl = open_pair(p, &slow, NULL);
    for (size_t i = 0; i < TOTAL; i++)
        data[i] = (char)pattern(i);
    t0 = GetTickCount();
    cr_assert_eq(wsx_stream_send(stuck.s, data, TOTAL), 0);
    cr_assert_eq(wsx_stream_send(slow.s, data, 4 << 20), 0);
    while (seen < (4u << 20)) {
        n = recv(cl, got, 65536, 0);
        cr_assert_gt(n, 0, "the slow reader lost its connection after %zu bytes", seen);
        cr_assert_eq(memcmp(got, data + seen, (size_t)n), 0);
        seen += (size_t)n;
        Sleep(2);
    }
    wait_closed(&stuck, 10000);
    took = GetTickCount() - t0;
    cr_assert_eq(stuck.why.wsa, WSAETIMEDOUT, "why: %d", stuck.why.wsa);
    cr_assert_geq(took, 500, "reset after %lu ms, before the timeout", (unsigned long)took);
    do
        n = recv(cs, got, 65536, 0);
    while (n > 0);
    if (n == 0) /* Wine 8.0: an RST that came while no recv was pending reads as FIN (C7) */
        n = send(cs, "x", 1, 0);
    cr_assert_lt(n, 0, "the stuck peer gets a reset, not a FIN");
    cr_assert_eq(WSAGetLastError(), WSAECONNRESET);
    cr_assert_eq(WaitForSingleObject(slow.closed, 0), WAIT_TIMEOUT, "the slow reader is open");
    cr_assert_eq(wsx_stream_close(slow.s), 0);
    wait_closed(&slow, 5000);
    cr_assert_eq(slow.why.wsa, 0);
    closesocket(cs);
    closesocket(cl);
    free(data);
    free(got);
    finish(p);
}

/* With big buffers, a queue of many MiB is not one send: a peer reading steadily, if more
 * slowly than the queue would go in one send timeout, sees progress in every send and is not
 * reset (one 32 MiB send took 3 s and was reset after 1). */
Test(stream, send_timeout_spares_a_peer_that_reads_steadily_behind_big_buffers)
{
    enum { TOTAL = 32 << 20 };
    wsx_port_opts po;
    wsx_port *p = NULL;
    ctx c;
    SOCKET cl;
    char *data = malloc(TOTAL), *got = malloc(128 << 10);
    size_t seen = 0;
    int n;

    memset(&po, 0, sizeof po);
    po.buffer_size = 16 << 20;
    po.send_timeout_ms = 1000;
    cr_assert_eq(wsx_port_create(&p, &po), 0);
    cr_assert_eq(wsx_port_start(p, 1), 0);
    ctx_init(&c);
    c.sink = 1;
    cl = open_pair(p, &c, NULL);
    for (size_t i = 0; i < TOTAL; i++)
        data[i] = (char)pattern(i);
    cr_assert_eq(wsx_stream_send(c.s, data, TOTAL), 0);
    cr_assert_eq(wsx_stream_shutdown(c.s), 0);
    while ((n = recv(cl, got, 128 << 10, 0)) > 0) { /* at most about 8 MiB/s */
        cr_assert_eq(memcmp(got, data + seen, (size_t)n), 0);
        seen += (size_t)n;
        Sleep(15);
    }
    cr_assert_eq(n, 0, "reset after %lu of %lu bytes", (unsigned long)seen, (unsigned long)TOTAL);
    cr_assert_eq(seen, TOTAL);
    cr_assert_eq(shutdown(cl, SD_SEND), 0);
    wait_closed(&c, 10000);
    cr_assert_eq(c.why.wsa, 0);
    closesocket(cl);
    free(data);
    free(got);
    finish(p);
}

typedef struct pusher {
    SOCKET s;
    size_t total;
    volatile LONG done;
} pusher;

static DWORD WINAPI push_fn(void *arg)
{
    pusher *u = arg;
    char *buf = malloc(65536);
    size_t sent = 0;

    while (sent < u->total) {
        int len = 65536, n;
        for (int i = 0; i < len; i++)
            buf[i] = (char)pattern(sent + (size_t)i);
        n = send(u->s, buf, len, 0);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    free(buf);
    InterlockedExchange(&u->done, 1);
    return 0;
}

/* The peer writes 8 MiB and reads nothing: the echo queue stays within its cap (reading pauses),
 * and once the peer reads, everything comes back. */
Test(stream, backpressure_caps_the_queue)
{
    enum { TOTAL = 8 << 20 };
    wsx_port *p = port_with_workers(1);
    ctx c;
    wsx_stream_opts o = {256 * 1024, 0, 1, 0, NULL};
    SOCKET cli;
    pusher u;
    HANDLE t;
    wsx_stream_info info;
    unsigned char *got = malloc(1 << 20);
    size_t seen = 0;

    ctx_init(&c);
    cli = open_pair(p, &c, &o);
    u.s = cli;
    u.total = TOTAL;
    u.done = 0;
    t = CreateThread(NULL, 0, push_fn, &u, 0, NULL);
    Sleep(1500);
    wsx_stream_get_info(c.s, &info);
    cr_assert_eq(u.done, 0, "the writer must be blocked by then");
    cr_assert(info.reading_paused, "reads paused while the queue is full");
    cr_assert_leq(info.peak_queued, info.max_queued, "peak %zu over cap %zu", info.peak_queued,
                  info.max_queued);
    cr_assert_eq(info.max_queued, 256 * 1024);
    while (seen < TOTAL) {
        int n = recv(cli, (char *)got, 1 << 20, 0);
        cr_assert_gt(n, 0);
        for (int i = 0; i < n; i++)
            if (got[i] != pattern(seen + (size_t)i))
                cr_assert_fail("byte %zu differs", seen + (size_t)i);
        seen += (size_t)n;
    }
    cr_assert_eq(WaitForSingleObject(t, 10000), WAIT_OBJECT_0);
    wsx_stream_get_info(c.s, &info);
    cr_assert_leq(info.peak_queued, info.max_queued);
    cr_assert_eq(info.bytes_in, TOTAL);
    closesocket(cli);
    wait_closed(&c, 5000);
    free(got);
    finish(p);
}

static void abortive_close(SOCKET s)
{
    struct linger lg = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_LINGER, (char *)&lg, sizeof lg);
    closesocket(s);
}

Test(stream, peer_reset_with_recv_pending)
{
    wsx_port *p = port_with_workers(1);
    ctx c;
    SOCKET cli;

    ctx_init(&c);
    cli = open_pair(p, &c, NULL);
    Sleep(100); /* the recv is pending now */
    abortive_close(cli);
    wait_closed(&c, 5000);
    cr_assert_eq(c.why.kind, WSX_KIND_PEER_RESET, "kind %s, wsa %d", wsx_kind_name(c.why.kind),
                 c.why.wsa);
    cr_assert_eq(c.why.ntstatus, (LONG)0xC000020DL);
    cr_assert_eq(c.why.win32, ERROR_NETNAME_DELETED);
    cr_assert_eq(c.why.wsa, WSAECONNRESET);
    cr_assert_eq(c.completions[WSX_OP_RECV][WSX_KIND_PEER_RESET], 1);
    finish(p);
}

/* The peer has a recv pending when our RST arrives: Wine 8.0 reports a reset only to an
 * operation pending at that moment (docs/semantics.md, C7). */
Test(stream, our_reset_reaches_the_peer_as_econnreset)
{
    wsx_port *p = port_with_workers(1);
    ctx c;
    SOCKET cli;
    char b[4];
    WSABUF wb = {sizeof b, b};
    WSAOVERLAPPED ov;
    DWORD n = 0, flags = 0;

    ctx_init(&c);
    cli = open_pair(p, &c, NULL);
    memset(&ov, 0, sizeof ov);
    ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    cr_assert_eq(WSARecv(cli, &wb, 1, &n, &flags, &ov, NULL), SOCKET_ERROR);
    cr_assert_eq(WSAGetLastError(), WSA_IO_PENDING);
    cr_assert_eq(wsx_stream_reset(c.s), 0);
    wait_closed(&c, 5000);
    cr_assert_eq(c.why.kind, WSX_KIND_ABORTED);
    cr_assert_eq(WaitForSingleObject(ov.hEvent, 5000), WAIT_OBJECT_0);
    cr_assert_eq(WSAGetOverlappedResult(cli, &ov, &n, FALSE, &flags), FALSE);
    cr_assert_eq(WSAGetLastError(), WSAECONNRESET);
    CloseHandle(ov.hEvent);
    closesocket(cli);
    finish(p);
}

/* A recv (peer sends nothing) and a send (peer reads nothing) pending: reset completes both as
 * aborted-locally, promptly, and the stream is released (pending back to 0). */
Test(stream, close_with_recv_and_send_pending)
{
    wsx_port *p = port_with_workers(2);
    ctx c;
    wsx_stream_opts o = {0, 0, 1, 0, NULL};
    SOCKET cli;
    char *big = calloc(1, 32 << 20);
    wsx_stream_info info;
    DWORD t0;

    ctx_init(&c);
    cli = open_pair(p, &c, &o);
    cr_assert_eq(wsx_stream_send(c.s, big, 32 << 20), 0);
    Sleep(300);
    wsx_stream_get_info(c.s, &info);
    cr_assert_eq(info.pending, 2, "a recv and a send pending, got %d", info.pending);
    t0 = GetTickCount();
    cr_assert_eq(wsx_stream_reset(c.s), 0);
    wait_closed(&c, 5000);
    cr_assert_lt(GetTickCount() - t0, 2000, "both completions came back promptly");
    cr_assert_eq(c.completions[WSX_OP_RECV][WSX_KIND_ABORTED], 1);
    cr_assert_eq(c.completions[WSX_OP_SEND][WSX_KIND_ABORTED], 1);
    cr_assert_eq(c.why.kind, WSX_KIND_ABORTED);
    cr_assert_eq(wsx_buf_pool_outstanding(wsx_port_buffers(p)), 0, "queue freed");
    /* on_close runs just before the stream goes back to the port's free list */
    for (int i = 0; i < 100 && wsx_port_destroy(p) != 0; i++)
        Sleep(10);
    closesocket(cli);
    free(big);
}

/* Peer FIN after data: every byte is echoed, then the stream sends FIN and closes itself. */
Test(stream, half_close_echoes_everything_then_fin)
{
    wsx_port *p = port_with_workers(1);
    ctx c;
    SOCKET cli;
    char out[100000], in[100000];

    ctx_init(&c);
    cli = open_pair(p, &c, NULL);
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (char)pattern(i);
    cr_assert_eq(send(cli, out, sizeof out, 0), (int)sizeof out);
    cr_assert_eq(shutdown(cli, SD_SEND), 0);
    t_recv_all(cli, in, sizeof in);
    cr_assert_eq(memcmp(in, out, sizeof out), 0);
    cr_assert_eq(recv(cli, in, 1, 0), 0, "FIN follows the echo");
    wait_closed(&c, 5000);
    cr_assert_eq(c.why.kind, WSX_KIND_EOF);
    closesocket(cli);
    finish(p);
}

static long long echo_run(int skip, wsx_port_stats *stats)
{
    enum { TOTAL = 4 << 20 };
    wsx_port *p = port_with_workers(1);
    ctx c;
    wsx_stream_opts o = {0, 0, skip, 0, NULL};
    SOCKET cli;
    pusher u;
    HANDLE t;
    unsigned char *got = malloc(1 << 20);
    size_t seen = 0;
    wsx_stream_info info;

    ctx_init(&c);
    cli = open_pair(p, &c, &o);
    wsx_stream_get_info(c.s, &info);
    cr_assert_eq(info.skip_on_success, skip);
    u.s = cli;
    u.total = TOTAL;
    u.done = 0;
    t = CreateThread(NULL, 0, push_fn, &u, 0, NULL);
    while (seen < TOTAL) {
        int n = recv(cli, (char *)got, 1 << 20, 0);
        cr_assert_gt(n, 0);
        for (int i = 0; i < n; i++)
            if (got[i] != pattern(seen + (size_t)i))
                cr_assert_fail("byte %zu differs (skip %d)", seen + (size_t)i, skip);
        seen += (size_t)n;
    }
    WaitForSingleObject(t, 10000);
    closesocket(cli);
    wait_closed(&c, 5000);
    wsx_port_get_stats(p, stats);
    finish(p);
    free(got);
    return (long long)seen;
}

Test(stream, skip_on_success_on_and_off_give_identical_results)
{
    wsx_port_stats on, off;

    cr_assert_eq(echo_run(1, &on), echo_run(0, &off));
    cr_assert_gt(on.inline_done, 0, "skip-on-success completed some operations inline");
    cr_assert_eq(off.inline_done, 0);
    cr_log_info("4 MiB echo: skip on: %lld dequeued, %lld inline, %lld requeued; "
                "skip off: %lld dequeued",
                (long long)on.dequeued, (long long)on.inline_done, (long long)on.requeued,
                (long long)off.dequeued);
}

/* Client side of the fairness run: keeps a fixed window of bytes circulating. */
static void loop_data(wsx_stream *s, wsx_buf *b)
{
    ctx *c = wsx_stream_user(s);
    InterlockedExchangeAdd64(&c->bytes, b->len - b->off);
    if (wsx_stream_send_buf(s, b) != 0)
        return;
}

static const wsx_stream_callbacks loop_cb = {loop_data, NULL, on_close, on_complete, NULL};

static void fairness(int workers)
{
    enum { N = 100, WINDOW = 16384 };
    wsx_port *p = port_with_workers(workers);
    wsx_stream_opts o = {0, 0, 1, 0, NULL};
    static ctx srv[N], cli[N];
    wsx_sockaddr a;
    SOCKET l = t_listener("127.0.0.1:0", &a);
    char window[WINDOW];
    LONG64 got[N], sum = 0, lo = -1, hi = 0;
    double mean;

    memset(window, 'w', sizeof window);
    for (int i = 0; i < N; i++) {
        SOCKET c = t_socket(AF_INET, SOCK_STREAM), s;
        cr_assert_eq(connect(c, (struct sockaddr *)&a.ss, a.len), 0);
        s = accept(l, NULL, NULL);
        cr_assert_neq(s, INVALID_SOCKET);
        ctx_init(&srv[i]);
        ctx_init(&cli[i]);
        cr_assert_eq(wsx_stream_open(p, s, &o, &echo_cb, &srv[i], NULL, 0, &srv[i].s), 0);
        cr_assert_eq(wsx_stream_open(p, c, &o, &loop_cb, &cli[i], NULL, 0, &cli[i].s), 0);
    }
    closesocket(l);
    for (int i = 0; i < N; i++)
        cr_assert_eq(wsx_stream_send(cli[i].s, window, sizeof window), 0);
    Sleep(500);
    for (int i = 0; i < N; i++)
        got[i] = -InterlockedCompareExchange64(&cli[i].bytes, 0, 0);
    Sleep(2000);
    for (int i = 0; i < N; i++) {
        got[i] += InterlockedCompareExchange64(&cli[i].bytes, 0, 0);
        sum += got[i];
        if (lo < 0 || got[i] < lo)
            lo = got[i];
        if (got[i] > hi)
            hi = got[i];
    }
    mean = (double)sum / N;
    cr_log_info("fairness, %d worker(s): %.1f MB/s in all, per connection min %.2f max %.2f of "
                "the mean",
                workers, (double)sum / 2.0 / 1e6, lo / mean, hi / mean);
    cr_assert_gt(sum, 0);
    for (int i = 0; i < N; i++)
        cr_assert(got[i] >= mean * 0.5 && got[i] <= mean * 2.0,
                  "connection %d got %.2f of the mean share", i, got[i] / mean);
    for (int i = 0; i < N; i++)
        wsx_stream_reset(cli[i].s);
    for (int i = 0; i < N; i++) {
        wait_closed(&cli[i], 10000);
        wait_closed(&srv[i], 10000);
    }
    finish(p);
}

Test(stream, fairness_100_connections_1_worker)
{
    fairness(1);
}

Test(stream, fairness_100_connections_2_workers)
{
    fairness(2);
}

/* Commit charge of the process: what its pending reads' buffers cost it. */
static SIZE_T private_bytes(void)
{
    PROCESS_MEMORY_COUNTERS_EX pmc;
    memset(&pmc, 0, sizeof pmc);
    GetProcessMemoryInfo(GetCurrentProcess(), (PROCESS_MEMORY_COUNTERS *)&pmc, sizeof pmc);
    return pmc.PagefileUsage;
}

/* With zero-byte reads an idle connection holds no buffer; without, one per connection. The
 * process's private bytes per connection are logged for the issue note. */
static void idle_run(int zero, int n)
{
    wsx_port *p = port_with_workers(1);
    wsx_stream_opts o = {0, zero, 1, 0, NULL};
    ctx *c = calloc((size_t)n, sizeof *c);
    SOCKET *cl = calloc((size_t)n, sizeof *cl);
    wsx_sockaddr a;
    SOCKET l = t_listener("127.0.0.1:0", &a);
    SIZE_T before = private_bytes(), after;
    char b[5];

    for (int i = 0; i < n; i++) {
        SOCKET s;
        cl[i] = t_socket(AF_INET, SOCK_STREAM);
        cr_assert_eq(connect(cl[i], (struct sockaddr *)&a.ss, a.len), 0);
        s = accept(l, NULL, NULL);
        ctx_init(&c[i]);
        cr_assert_eq(wsx_stream_open(p, s, &o, &echo_cb, &c[i], NULL, 0, &c[i].s), 0);
    }
    Sleep(200);
    after = private_bytes();
    cr_log_info("%d idle connections, zero-byte reads %s: %lu buffers out, %.0f private bytes per "
                "connection",
                n, zero ? "on" : "off",
                (unsigned long)wsx_buf_pool_outstanding(wsx_port_buffers(p)),
                (double)(after - before) / n);
    cr_assert_eq(wsx_buf_pool_outstanding(wsx_port_buffers(p)), zero ? 0u : (size_t)n);
    /* and they still echo */
    cr_assert_eq(send(cl[n - 1], "hello", 5, 0), 5);
    t_recv_all(cl[n - 1], b, 5);
    cr_assert_eq(memcmp(b, "hello", 5), 0);
    for (int i = 0; i < n; i++)
        closesocket(cl[i]);
    for (int i = 0; i < n; i++)
        wait_closed(&c[i], 10000);
    closesocket(l);
    finish(p);
    free(c);
    free(cl);
}

Test(stream, idle_connections_zero_byte_reads)
{
    idle_run(1, 500);
}

Test(stream, idle_connections_full_reads)
{
    idle_run(0, 500);
}

/* zero_byte_reads on: a chatty connection earns a full read (one buffer held), and gives it back
 * half a second after it goes quiet (the port's sweep parks it on a zero-byte read).
 * docs/semantics.md P5. */
Test(stream, busy_stream_earns_a_buffer_and_parks_it_when_idle)
{
    wsx_port *p = port_with_workers(1);
    wsx_stream_opts o = {0, 1, 1, 0, NULL};
    wsx_buf_pool *pool = wsx_port_buffers(p);
    ctx c;
    SOCKET cli;
    char b[5];
    wsx_port_stats ps;

    ctx_init(&c);
    cli = open_pair(p, &c, &o);
    Sleep(100);
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 0, "a new stream waits on a zero-byte read");
    for (int i = 0; i < 10; i++) { /* two quick reads in a row are enough; ten leave slack */
        cr_assert_eq(send(cli, "hello", 5, 0), 5);
        t_recv_all(cli, b, 5);
        cr_assert_eq(memcmp(b, "hello", 5), 0);
    }
    Sleep(50);
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 1, "quick reads in a row: a full read is posted");
    Sleep(1500);
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 0, "idle 1.5 s: parked, its buffer is back");
    cr_assert_eq(c.completions[WSX_OP_RECV][WSX_KIND_ABORTED], 1, "the one parked read");
    /* parked is not closed: it still echoes, byte-exact, and ends normally */
    cr_assert_eq(send(cli, "world", 5, 0), 5);
    t_recv_all(cli, b, 5);
    cr_assert_eq(memcmp(b, "world", 5), 0);
    cr_assert_eq(shutdown(cli, SD_SEND), 0);
    wait_closed(&c, 5000);
    cr_assert_eq(c.why.kind, WSX_KIND_EOF);
    wsx_port_get_stats(p, &ps);
    cr_assert_eq(ps.stale_dropped, 0);
    closesocket(cli);
    finish(p);
}

/* Bytes that came with the accept count as a wakeup: the next read has a buffer (the client's
 * next bytes or FIN cost no zero-byte round trip), and it is parked like any other when idle. */
Test(stream, initial_data_reads_on_with_a_buffer_then_parks)
{
    wsx_port *p = port_with_workers(1);
    wsx_stream_opts o = {0, 1, 1, 0, NULL};
    wsx_buf_pool *pool = wsx_port_buffers(p);
    SOCKET srv, cli = t_pair("127.0.0.1:0", &srv);
    ctx c;
    char b[5];

    ctx_init(&c);
    cr_assert_eq(wsx_stream_open(p, srv, &o, &echo_cb, &c, "first", 5, &c.s), 0);
    t_recv_all(cli, b, 5);
    cr_assert_eq(memcmp(b, "first", 5), 0);
    Sleep(50);
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 1, "a full read follows the initial data");
    Sleep(1500);
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 0, "parked when idle");
    cr_assert_eq(shutdown(cli, SD_SEND), 0);
    wait_closed(&c, 5000);
    cr_assert_eq(c.why.kind, WSX_KIND_EOF);
    closesocket(cli);
    finish(p);
}

/* The port closes its idle streams (idle timeout) and then all of them (stop). */
Test(stream, port_closes_idle_streams_then_all)
{
    wsx_port *p = port_with_workers(1);
    ctx a, b;
    SOCKET ca, cb;
    char buf[5];

    ctx_init(&a);
    ctx_init(&b);
    ca = open_pair(p, &a, NULL);
    cb = open_pair(p, &b, NULL);
    Sleep(400);
    cr_assert_eq(send(ca, "hello", 5, 0), 5);
    t_recv_all(ca, buf, 5);
    cr_assert_eq(wsx_port_close_streams(p, 300, WSX_CLOSE_GRACEFUL), 1, "only b was idle");
    wait_closed(&b, 5000);
    cr_assert_eq(recv(cb, buf, 5, 0), 0, "b got a FIN");
    cr_assert_eq(send(ca, "again", 5, 0), 5);
    t_recv_all(ca, buf, 5);
    cr_assert_eq(memcmp(buf, "again", 5), 0, "a still echoes");
    cr_assert_eq(wsx_port_close_streams(p, 0, WSX_CLOSE_RESET), 1, "a, the one still open");
    wait_closed(&a, 5000);
    cr_assert_eq(a.why.kind, WSX_KIND_ABORTED);
    cr_assert_eq(wsx_port_close_streams(p, 0, WSX_CLOSE_RESET), 0, "none left");
    cr_assert_eq(wsx_port_close_streams(NULL, 0, WSX_CLOSE_RESET), 0);
    closesocket(ca);
    closesocket(cb);
    finish(p);
}

/* A stream whose peer is slow to read its echo is not idle: an idle close would drop what the
 * peer still sends behind our FIN, and the peer would take the cut echo for a whole one. */
typedef struct sender {
    SOCKET s;
    const char *data;
    int len, sent;
} sender;

static DWORD WINAPI send_all_thread(void *arg)
{
    sender *x = arg;
    while (x->sent < x->len) {
        int n = send(x->s, x->data + x->sent, x->len - x->sent, 0);
        if (n <= 0)
            break;
        x->sent += n;
    }
    shutdown(x->s, SD_SEND);
    return 0;
}

Test(stream, a_stream_waiting_for_its_peer_to_read_is_not_idle)
{
    enum { LEN = 8 << 20 };
    wsx_port *p = port_with_workers(1);
    char *out = malloc(LEN), *in = malloc(LEN);
    sender x;
    HANDLE t;
    ctx c;

    cr_assert(out && in);
    for (int i = 0; i < LEN; i++)
        out[i] = (char)pattern((size_t)i);
    ctx_init(&c);
    x.s = open_pair(p, &c, NULL);
    x.data = out;
    x.len = LEN;
    x.sent = 0;
    t = CreateThread(NULL, 0, send_all_thread, &x, 0, NULL);
    Sleep(1500); /* the echo fills both ways: the stream stops reading, its send waits */
    cr_assert_lt(x.sent, LEN, "the kernel buffers took all of it: the test proves nothing");
    cr_assert_eq(wsx_port_close_streams(p, 500, WSX_CLOSE_GRACEFUL), 0,
                 "a stream with its echo waiting was closed as idle");
    t_recv_all(x.s, in, LEN);
    cr_assert_eq(memcmp(in, out, LEN), 0);
    cr_assert_eq(WaitForSingleObject(t, 10000), WAIT_OBJECT_0);
    cr_assert_eq(x.sent, LEN);
    wait_closed(&c, 5000);
    cr_assert_eq(c.why.kind, WSX_KIND_EOF);
    CloseHandle(t);
    closesocket(x.s);
    free(out);
    free(in);
    finish(p);
}

/* One small read ready at once after a served one: with another stream on the port it waits its
 * turn (requeued: to the worker's next round, or through the port for a thread that polls by
 * hand), alone it is delivered inline. The client's 600 bytes arrive in one segment: the pending
 * 512-byte read takes the first part through the port, the read posted after the echo finds the
 * other 88 at once. docs/semantics.md P12. */
static LONG64 small_read_requeues(int others, int by_hand, unsigned cap)
{
    wsx_port_opts po = {cap, 512, 0, 0, 0, 0};
    wsx_stream_opts o = {0, 0, 1, 0, NULL};
    wsx_port_stats st;
    wsx_port *p = NULL;
    ctx a, b;
    SOCKET ca, cb = INVALID_SOCKET;
    char out[600], in[600];
    int got = 0;

    cr_assert_eq(wsx_port_create(&p, &po), 0);
    if (!by_hand)
        cr_assert_eq(wsx_port_start(p, 1), 0);
    ctx_init(&a);
    ctx_init(&b);
    ca = open_pair(p, &a, &o);
    if (others)
        cb = open_pair(p, &b, &o);
    if (by_hand)
        wsx_port_poll(p, 50);
    Sleep(100); /* the reads are pending */
    for (int i = 0; i < 600; i++)
        out[i] = (char)pattern((size_t)i);
    cr_assert_eq(send(ca, out, 600, 0), 600);
    if (by_hand) {
        u_long nb = 1;
        ioctlsocket(ca, FIONBIO, &nb);
        for (int i = 0; i < 500 && got < 600; i++) {
            int r;
            wsx_port_poll(p, 10);
            r = recv(ca, in + got, 600 - got, 0);
            got += r > 0 ? r : 0;
        }
        cr_assert_eq(got, 600, "all echoed with the test thread polling");
    } else {
        t_recv_all(ca, in, 600);
    }
    cr_assert_eq(memcmp(in, out, 600), 0, "echoed in order");
    wsx_port_get_stats(p, &st);
    closesocket(ca);
    if (others)
        closesocket(cb);
    if (by_hand) {
        for (int i = 0; i < 500 && (WaitForSingleObject(a.closed, 0) != WAIT_OBJECT_0 ||
                                    (others && WaitForSingleObject(b.closed, 0) != WAIT_OBJECT_0));
             i++)
            wsx_port_poll(p, 10);
    }
    wait_closed(&a, 5000);
    if (others)
        wait_closed(&b, 5000);
    finish(p);
    return st.requeued;
}

Test(stream, small_read_waits_its_turn_when_the_port_has_other_streams)
{
    cr_assert_eq(small_read_requeues(0, 0, 0), 0, "alone: nobody to be fair to");
    /* inline_cap 1: the echo's send and the 88-byte read make a run of 2, within 8x the cap
     * that a stream alone on its port gets for small exchanges */
    cr_assert_eq(small_read_requeues(0, 0, 1), 0, "alone, small exchanges run past the cap");
    cr_assert_geq(small_read_requeues(1, 0, 0), 1, "the 88-byte read waited its turn");
    cr_assert_geq(small_read_requeues(1, 1, 0), 1, "the same, with the test thread polling");
}

static wsx_stream_info info_at_close;
static volatile LONG info_reads;

static void info_on_data(wsx_stream *s, wsx_buf *b)
{
    wsx_stream_info i;
    wsx_stream_get_info(s, &i); /* this stream's lock is held around its callbacks */
    InterlockedIncrement(&info_reads);
    on_data(s, b);
}

static void info_on_close(wsx_stream *s, const wsx_status *why)
{
    wsx_stream_get_info(s, &info_at_close);
    on_close(s, why);
}

/* A callback may call into its own stream: the stream lock is recursive. Streams of one port
 * with different callbacks keep their own (the port shares one copy per distinct set). */
Test(stream, callbacks_call_into_their_own_stream)
{
    static const wsx_stream_callbacks info_cb = {info_on_data, NULL, info_on_close, NULL, NULL};
    wsx_port *p = port_with_workers(1);
    ctx a, b;
    SOCKET srv, ca, cb;
    char buf[5];

    ctx_init(&a);
    ctx_init(&b);
    b.sink = 1;
    ca = t_pair("127.0.0.1:0", &srv);
    cr_assert_eq(wsx_stream_open(p, srv, NULL, &info_cb, &a, NULL, 0, &a.s), 0);
    cb = open_pair(p, &b, NULL);
    cr_assert_eq(send(ca, "hello", 5, 0), 5);
    t_recv_all(ca, buf, 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    cr_assert_eq(send(cb, "quiet", 5, 0), 5);
    for (int i = 0; i < 500 && b.bytes < 5; i++)
        Sleep(10);
    cr_assert_eq(b.bytes, 5);
    cr_assert_eq(info_reads, 1, "b's data went to b's callbacks, not a's");
    closesocket(ca);
    wait_closed(&a, 5000);
    cr_assert_eq(info_at_close.bytes_in, 5);
    cr_assert_eq(info_at_close.bytes_out, 5);
    cr_assert_eq(info_at_close.pending, 0);
    cr_assert_eq(info_at_close.queued, 0);
    closesocket(cb);
    wait_closed(&b, 5000);
    finish(p);
}

/* A callback that polls another port (here B, with one user op posted each time) runs B's round
 * only: the inline completions and requeued ops that A's round has not delivered yet wait for it.
 * Delivered from B's round they would run a stream's callbacks inside its own. */
static wsx_port *nested_port;
static wsx_op nested_op;
static volatile LONG nested_ran, nested_polls, reentered;

static void nested_fn(wsx_op *op, const wsx_status *st)
{
    (void)op;
    (void)st;
    InterlockedIncrement(&nested_ran);
}

static void poll_nested(void)
{
    wsx_op_init(&nested_op, WSX_OP_USER, nested_fn, NULL, NULL);
    if (wsx_port_post(nested_port, &nested_op, 0, 0) == 0) {
        InterlockedIncrement(&nested_polls);
        wsx_port_poll(nested_port, 0);
    }
}

static void nested_on_data(wsx_stream *s, wsx_buf *b)
{
    ctx *c = wsx_stream_user(s);
    if (c->inside++)
        InterlockedIncrement(&reentered);
    on_data(s, b);
    poll_nested();
    c->inside--;
}

static void nested_on_complete(wsx_stream *s, wsx_op_kind kind, const wsx_status *st)
{
    ctx *c = wsx_stream_user(s);
    if (c->inside++)
        InterlockedIncrement(&reentered);
    on_complete(s, kind, st);
    poll_nested();
    c->inside--;
}

Test(stream, poll_nested_in_a_callback_runs_only_its_own_round)
{
    static const wsx_stream_callbacks cb = {nested_on_data, NULL, on_close, nested_on_complete,
                                            NULL};
    wsx_port_opts po = {0, 512, 0, 0, 0, 0};
    wsx_stream_opts o = {0, 0, 1, 0, NULL};
    wsx_port_stats st;
    wsx_port *p = NULL;
    ctx c[2];
    SOCKET cli[2], srv;
    char out[600], in[2][600];
    u_long nb = 1;

    cr_assert_eq(wsx_port_create(&p, &po), 0);
    cr_assert_eq(wsx_port_create(&nested_port, NULL), 0);
    for (int k = 0; k < 2; k++) {
        ctx_init(&c[k]);
        cli[k] = t_pair("127.0.0.1:0", &srv);
        cr_assert_eq(wsx_stream_open(p, srv, &o, &cb, &c[k], NULL, 0, &c[k].s), 0);
        ioctlsocket(cli[k], FIONBIO, &nb);
    }
    for (int i = 0; i < 600; i++)
        out[i] = (char)pattern((size_t)i);
    for (int round = 0; round < 20; round++) {
        int got[2] = {0, 0};
        for (int k = 0; k < 2; k++)
            cr_assert_eq(send(cli[k], out, 600, 0), 600);
        for (int i = 0; i < 500 && (got[0] < 600 || got[1] < 600); i++) {
            wsx_port_poll(p, 10);
            for (int k = 0; k < 2; k++) {
                int r = recv(cli[k], in[k] + got[k], 600 - got[k], 0);
                got[k] += r > 0 ? r : 0;
            }
        }
        for (int k = 0; k < 2; k++) {
            cr_assert_eq(got[k], 600, "round %d, client %d: all echoed", round, k);
            cr_assert_eq(memcmp(in[k], out, 600), 0, "round %d, client %d: in order", round, k);
        }
    }
    wsx_port_get_stats(p, &st);
    cr_assert_geq(st.requeued, 1, "the 88-byte reads waited their turn (the case under test)");
    cr_assert_eq(reentered, 0, "a stream's callback ran inside its own");
    cr_assert_gt(nested_polls, 0);
    cr_assert_eq(nested_ran, nested_polls, "each nested poll ran its own port's completion");
    for (int k = 0; k < 2; k++)
        closesocket(cli[k]);
    for (int i = 0; i < 500 && (WaitForSingleObject(c[0].closed, 0) != WAIT_OBJECT_0 ||
                                WaitForSingleObject(c[1].closed, 0) != WAIT_OBJECT_0);
         i++)
        wsx_port_poll(p, 10);
    wait_closed(&c[0], 5000);
    wait_closed(&c[1], 5000);
    cr_assert_eq(wsx_port_destroy(p), 0);
    cr_assert_eq(wsx_port_destroy(nested_port), 0);
}

/* A stream holds a send state (op + queue, 144 bytes) only while it has something to send: it
 * takes one from the port's free list and gives it back once its send's completion was
 * delivered. Four streams echoing one after the other share one state: a stream that kept its
 * own would leave the list empty, one that gave it back without the next reusing it would leave
 * four. */
static USHORT free_send_states(wsx_port *p, USHORT want)
{
    for (int i = 0; i < 200 && QueryDepthSList(&p->free_wr) != want; i++)
        Sleep(10);
    return QueryDepthSList(&p->free_wr);
}

Test(stream, an_idle_stream_holds_no_send_state)
{
    wsx_port *p = port_with_workers(1);
    ctx c[4];
    SOCKET cli[4];
    char buf[5];

    for (int k = 0; k < 4; k++) {
        ctx_init(&c[k]);
        cli[k] = open_pair(p, &c[k], NULL);
    }
    cr_assert_eq(QueryDepthSList(&p->free_wr), 0, "no stream has sent yet");
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(send(cli[k], "hello", 5, 0), 5);
        t_recv_all(cli[k], buf, 5);
        cr_assert_eq(memcmp(buf, "hello", 5), 0);
        cr_assert_eq(free_send_states(p, 1), 1, "after stream %d's echo: one state, given back", k);
    }
    for (int k = 0; k < 4; k++) {
        closesocket(cli[k]);
        wait_closed(&c[k], 5000);
    }
    finish(p);
}

/* A graceful close while the peer still sends: the stream reads on after its FIN and drops what
 * comes. Closing with that data unread would send RST, which throws away the end of the reply
 * that the peer has not received yet (Linux, so Wine, and Windows alike). */
static void drop_data(wsx_stream *s, wsx_buf *b)
{
    (void)s;
    wsx_buf_put(b);
}

Test(stream, graceful_close_lingers_until_the_peer_is_done)
{
    static const wsx_stream_callbacks cb = {drop_data, NULL, on_close, NULL, NULL};
    const size_t n = 4 << 20;
    wsx_port *p = port_with_workers(1);
    SOCKET srv, cli = t_pair("127.0.0.1:0", &srv);
    char *out = malloc(n), *in = malloc(n), junk[4096];
    size_t pushed = 0;
    u_long nb = 1, blocking = 0;
    ctx c;
    int r;

    int small = 32 << 10; /* most of the reply waits in the server's send buffer */

    ctx_init(&c);
    setsockopt(cli, SOL_SOCKET, SO_RCVBUF, (char *)&small, sizeof small);
    cr_assert_eq(wsx_stream_open(p, srv, NULL, &cb, &c, NULL, 0, &c.s), 0);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)pattern(i);
    cr_assert_eq(wsx_stream_send(c.s, out, n), 0);
    cr_assert_eq(wsx_stream_close(c.s), 0);
    memset(junk, 'j', sizeof junk);
    ioctlsocket(cli, FIONBIO, &nb); /* a pipelining client: it sends on before it reads */
    for (int i = 0; i < 64 && pushed < (256 << 10); i++) {
        r = send(cli, junk, sizeof junk, 0);
        if (r > 0)
            pushed += (size_t)r;
        else
            Sleep(5);
    }
    cr_assert_gt(pushed, 0);
    ioctlsocket(cli, FIONBIO, &blocking);
    Sleep(200);
    t_recv_all(cli, in, (int)n);
    cr_assert_eq(memcmp(in, out, n), 0, "the whole reply, in order");
    r = recv(cli, junk, 1, 0);
    cr_assert_eq(r, 0, "then the server's FIN, not a reset (recv %d, error %d)", r,
                 WSAGetLastError());
    closesocket(cli);
    wait_closed(&c, 5000);
    cr_assert_eq(c.why.kind, WSX_KIND_EOF, "it lingered until our FIN: %s",
                 wsx_kind_name(c.why.kind));
    free(out);
    free(in);
    finish(p);
}

/* A peer that never sends its FIN ends the linger after LINGER_MS (2 s), at the sweep. */
Test(stream, graceful_close_stops_lingering_after_two_seconds)
{
    wsx_port *p = port_with_workers(1);
    ctx c;
    SOCKET cli;
    char buf[8];
    DWORD t0;

    ctx_init(&c);
    cli = open_pair(p, &c, NULL);
    cr_assert_eq(send(cli, "hi", 2, 0), 2);
    t_recv_all(cli, buf, 2);
    t0 = GetTickCount();
    cr_assert_eq(wsx_stream_close(c.s), 0);
    cr_assert_eq(recv(cli, buf, 1, 0), 0, "our FIN comes at once"); /* the client keeps its end */
    cr_assert_eq(WaitForSingleObject(c.closed, 1000), WAIT_TIMEOUT, "it lingers");
    wait_closed(&c, 4000);
    cr_assert_geq(GetTickCount() - t0, 1900, "closed after %lu ms", GetTickCount() - t0);
    cr_assert_eq(c.why.kind, WSX_KIND_OK);
    closesocket(cli);
    finish(p);
}

/* A socket already on another port cannot join this one: the open fails, closes the socket and
 * gives the stream object back (the port can still be destroyed: no count leaked). */
Test(stream, open_on_a_second_port_fails_and_leaks_nothing)
{
    wsx_port *a = port_with_workers(1), *b = port_with_workers(1);
    SOCKET srv, cli = t_pair("127.0.0.1:0", &srv);
    wsx_stream *s = (wsx_stream *)&s;
    int skip;

    cr_assert_eq(wsx_port_associate(a, srv, 0, &skip), 0);
    cr_assert_neq(wsx_stream_open(b, srv, NULL, &echo_cb, NULL, NULL, 0, &s), 0);
    cr_assert_null(s);
    cr_assert_eq(send(srv, "x", 1, 0), SOCKET_ERROR, "the socket was closed");
    cr_assert_eq(WSAGetLastError(), WSAENOTSOCK);
    cr_assert_eq(wsx_port_close_streams(b, 0, WSX_CLOSE_RESET), 0,
                 "the given-back object is no stream");
    cr_assert_eq(wsx_port_destroy(b), 0, "no stream left counted on b");
    closesocket(cli);
    finish(a);
}

Test(stream, bad_arguments)
{
    wsx_port *p = port_with_workers(1);
    wsx_stream *s = (wsx_stream *)&s;
    wsx_stream_callbacks none = {NULL, NULL, NULL, NULL, NULL};
    SOCKET a = t_socket(AF_INET, SOCK_STREAM);

    cr_assert_eq(wsx_stream_open(p, a, NULL, &none, NULL, NULL, 0, &s), WSAEINVAL,
                 "on_data is required");
    cr_assert_null(s);
    cr_assert_eq(wsx_stream_open(NULL, INVALID_SOCKET, NULL, &echo_cb, NULL, NULL, 0, &s),
                 WSAEINVAL);
    cr_assert_eq(wsx_stream_send(NULL, "x", 1), WSAEINVAL);
    cr_assert_eq(wsx_stream_send_buf(NULL, NULL), WSAEINVAL);
    cr_assert_eq(wsx_stream_close(NULL), WSAEINVAL);
    cr_assert_eq(wsx_stream_reset(NULL), WSAEINVAL);
    cr_assert_eq(wsx_stream_shutdown(NULL), WSAEINVAL);
    finish(p);
}

static void reset_on_data(wsx_stream *s, wsx_buf *b)
{
    wsx_buf_put(b);
    wsx_stream_reset(s);
}

/* A connection record that holds its stream pointer and is freed by on_close, the usual way. */
typedef struct holder {
    wsx_stream *s;
    volatile LONG *closes;
} holder;

static void free_holder(wsx_stream *s, const wsx_status *why)
{
    holder *h = wsx_stream_user(s);
    (void)why;
    cr_assert_null(h->s, "*out still pointed at the stream when on_close ran");
    InterlockedIncrement(h->closes);
    memset(h, 0xDD, sizeof *h);
    free(h);
}

/* A stream that ends within wsx_stream_open is not handed out: its object is free already. */
Test(stream, open_gives_no_stream_that_ended_within_the_call)
{
    wsx_port *p = NULL;
    wsx_stream_opts o = {.skip_on_success = 1};
    wsx_stream_callbacks cb = {reset_on_data, NULL, on_close, NULL, NULL};
    WSAPOLLFD pfd = {0};
    SOCKET srv, cli;
    wsx_stream *s;
    ctx c;

    cr_assert_eq(wsx_port_create(&p, NULL), 0); /* no workers: all is delivered on this thread */
    ctx_init(&c);
    cli = t_pair("127.0.0.1:0", &srv);
    s = (wsx_stream *)&s;
    cr_assert_eq(wsx_stream_open(p, srv, &o, &cb, &c, "hi", 2, &s), 0);
    cr_assert_null(s, "on_data reset the stream: the pointer would be a free object's");
    cr_assert_eq(WaitForSingleObject(c.closed, 0), WAIT_OBJECT_0, "on_close ran within the call");
    cr_assert_eq(c.why.kind, WSX_KIND_ABORTED);
    closesocket(cli);

    ctx_init(&c);
    cli = t_pair("127.0.0.1:0", &srv);
    cr_assert_eq(shutdown(cli, SD_SEND), 0);
    pfd.fd = srv;
    pfd.events = POLLRDNORM;
    cr_assert_eq(WSAPoll(&pfd, 1, 5000), 1, "the FIN did not arrive");
    s = (wsx_stream *)&s;
    cr_assert_eq(wsx_stream_open(p, srv, &o, &echo_cb, &c, NULL, 0, &s), 0);
    cr_assert_null(s, "the first read found the FIN at once and the stream closed");
    cr_assert_eq(WaitForSingleObject(c.closed, 0), WAIT_OBJECT_0);
    cr_assert_eq(c.why.kind, WSX_KIND_EOF);
    closesocket(cli);

    /* *out inside a record that on_close frees: it is cleared before on_close, never after. */
    {
        wsx_stream_callbacks fcb = {reset_on_data, NULL, free_holder, NULL, NULL};
        volatile LONG closes = 0;
        holder *h = malloc(sizeof *h);
        cr_assert_not_null(h);
        h->closes = &closes;
        cli = t_pair("127.0.0.1:0", &srv);
        cr_assert_eq(wsx_stream_open(p, srv, &o, &fcb, h, "hi", 2, &h->s), 0);
        cr_assert_eq(closes, 1);
        closesocket(cli);
    }
    cr_assert_eq(wsx_port_destroy(p), 0);
}

/* A reference reaches its connection from another thread, and nothing after it ended, even once
 * the stream object serves another connection. */
Test(stream, references_reach_only_their_own_connection)
{
    wsx_port *p = port_with_workers(1);
    ctx a, b;
    SOCKET ca, cb;
    wsx_stream_ref r;
    char buf[8];

    ctx_init(&a);
    ca = open_pair(p, &a, NULL);
    r = wsx_stream_get_ref(a.s);
    cr_assert_eq(wsx_stream_ref_send(r, "hello", 5), 0);
    t_recv_all(ca, buf, 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    shutdown(ca, SD_SEND); /* the stream echoes nothing more, FIN, closes */
    wait_closed(&a, 5000);
    cr_assert_eq(wsx_stream_ref_send(r, "late", 4), WSAENOTCONN);
    cr_assert_eq(wsx_stream_ref_close(r, WSX_CLOSE_RESET), WSAENOTCONN);

    ctx_init(&b);
    cb = open_pair(p, &b, NULL);
    cr_assert_eq(b.s, a.s, "the object was reused (the free list is LIFO)");
    cr_assert_eq(wsx_stream_ref_send(r, "stale", 5), WSAENOTCONN);
    cr_assert_eq(wsx_stream_ref_close(r, WSX_CLOSE_RESET), WSAENOTCONN, "not the new connection");
    cr_assert_eq(wsx_stream_ref_send(wsx_stream_get_ref(b.s), "new", 3), 0);
    t_recv_all(cb, buf, 3);
    cr_assert_eq(memcmp(buf, "new", 3), 0);
    cr_assert_eq(wsx_stream_ref_send(wsx_stream_get_ref(NULL), "x", 1), WSAEINVAL);
    closesocket(ca);
    closesocket(cb);
    wait_closed(&b, 5000);
    finish(p);
}

/* Two streams on two workers whose callbacks send to each other at the same moment: each waits
 * for the other's lock, for ever, unless a reference send from a callback declines to wait. */
static HANDLE cross_in[2];
static wsx_stream_ref cross_to[2];
static volatile LONG cross_rc[2] = {-1, -1};
static int cross_close; /* the callbacks close each other instead of sending */

static void cross_on_data(wsx_stream *s, wsx_buf *b)
{
    int me = (int)(INT_PTR)wsx_stream_user(s);

    wsx_buf_put(b);
    SetEvent(cross_in[me]);
    WaitForSingleObject(cross_in[!me], 5000); /* both inside their callbacks now */
    InterlockedExchange(&cross_rc[me], cross_close
                                           ? wsx_stream_ref_close(cross_to[!me], WSX_CLOSE_RESET)
                                           : wsx_stream_ref_send(cross_to[!me], "x", 1));
}

static void cross_run(int closing)
{
    wsx_port *p[2] = {port_with_workers(1), port_with_workers(1)};
    wsx_stream_callbacks cb = {cross_on_data, NULL, NULL, NULL, NULL};
    SOCKET cli[2], srv;
    wsx_stream *s[2];

    cross_close = closing;
    for (int i = 0; i < 2; i++) {
        cross_rc[i] = -1;
        cross_in[i] = CreateEventW(NULL, TRUE, FALSE, NULL);
        cli[i] = t_pair("127.0.0.1:0", &srv);
        cr_assert_eq(wsx_stream_open(p[i], srv, NULL, &cb, (void *)(INT_PTR)i, NULL, 0, &s[i]), 0);
        cross_to[i] = wsx_stream_get_ref(s[i]);
    }
    cr_assert_eq(send(cli[0], "a", 1, 0), 1);
    cr_assert_eq(send(cli[1], "b", 1, 0), 1);
    for (int i = 0; i < 100 && (cross_rc[0] == -1 || cross_rc[1] == -1); i++)
        Sleep(50);
    cr_assert_neq(cross_rc[0], -1, "stream 0's callback is stuck");
    cr_assert_neq(cross_rc[1], -1, "stream 1's callback is stuck");
    for (int i = 0; i < 2; i++) {
        char c;
        cr_assert(cross_rc[i] == 0 || cross_rc[i] == WSAEWOULDBLOCK, "rc %ld", cross_rc[i]);
        if (cross_rc[!i] == 0 && !closing) /* what was queued arrives */
            cr_assert_eq(recv(cli[i], &c, 1, 0), 1);
        if (cross_rc[!i] == 0 && closing) /* the reset arrives */
            cr_assert_leq(recv(cli[i], &c, 1, 0), 0);
        closesocket(cli[i]);
        CloseHandle(cross_in[i]);
    }
    finish(p[0]);
    finish(p[1]);
}

Test(stream, reference_sends_between_callbacks_do_not_deadlock)
{
    cross_run(0);
}

Test(stream, reference_closes_between_callbacks_do_not_deadlock)
{
    cross_run(1);
}

/* A stream opened in a callback stays that callback's until it returns: ended meanwhile by a
 * completion on the port's other worker, its object is not handed to the next stream opened, so
 * the pointer never reaches another connection (the docs' client opens in wsx_connect's callback
 * and sends right after). */
typedef struct opener {
    ctx a, b;
    SOCKET cli_a, cli_b;
    wsx_stream *sa, *sb;
    int ended_first, send_after;
    HANDLE done;
} opener;

static void open_in_callback(wsx_op *op, const wsx_status *st)
{
    opener *o = op->user;
    wsx_stream_opts so = {.skip_on_success = 1};
    SOCKET srv;
    struct linger lg = {1, 0};

    (void)st;
    o->cli_a = t_pair("127.0.0.1:0", &srv);
    if (wsx_stream_open(op->port, srv, &so, &echo_cb, &o->a, NULL, 0, &o->sa) == 0 && o->sa) {
        /* The peer resets: A's pending read completes on the other worker, which ends A. */
        setsockopt(o->cli_a, SOL_SOCKET, SO_LINGER, (char *)&lg, sizeof lg);
        closesocket(o->cli_a);
        o->ended_first = WaitForSingleObject(o->a.closed, 5000) == WAIT_OBJECT_0;
        o->cli_b = t_pair("127.0.0.1:0", &srv);
        wsx_stream_open(op->port, srv, &so, &echo_cb, &o->b, NULL, 0, &o->sb);
        o->send_after = wsx_stream_send(o->sa, "A's", 3);
    }
    SetEvent(o->done);
}

Test(stream, a_stream_opened_in_a_callback_is_not_reused_before_it_returns)
{
    wsx_port *p = port_with_workers(2);
    opener o;
    wsx_op op;
    char got[8];

    memset(&o, 0, sizeof o);
    ctx_init(&o.a);
    ctx_init(&o.b);
    o.done = CreateEventW(NULL, TRUE, FALSE, NULL);
    wsx_op_init(&op, WSX_OP_USER, open_in_callback, NULL, NULL);
    op.user = &o;
    cr_assert_eq(wsx_port_post(p, &op, 0, 0), 0);
    cr_assert_eq(WaitForSingleObject(o.done, 20000), WAIT_OBJECT_0);
    cr_assert_not_null(o.sa);
    cr_assert(o.ended_first, "the reset did not end stream A on the other worker");
    cr_assert_eq(o.a.why.kind, WSX_KIND_PEER_RESET);
    cr_assert_not_null(o.sb);
    cr_assert_neq(o.sa, o.sb, "B got A's object while A's opener still held the pointer");
    cr_assert_neq(o.send_after, 0, "a send on the ended stream A was accepted");
    /* B's client got nothing of A's. */
    {
        DWORD ms = 300;
        int n;
        setsockopt(o.cli_b, SOL_SOCKET, SO_RCVTIMEO, (char *)&ms, sizeof ms);
        n = recv(o.cli_b, got, sizeof got, 0);
        cr_assert(n < 0 && WSAGetLastError() == WSAETIMEDOUT, "B's peer received %d bytes", n);
    }
    /* Once the callback has returned, A's object is free again: the next open takes it. */
    {
        ctx c;
        SOCKET cli;
        ctx_init(&c);
        cli = open_pair(p, &c, NULL);
        cr_assert_eq(c.s, o.sa, "A's object was not released after its opener returned");
        closesocket(cli);
        wait_closed(&c, 5000);
    }
    closesocket(o.cli_b);
    wait_closed(&o.b, 5000);
    finish(p);
}

/* Outside callbacks the open is a delivery scope of its own: on_data for the initial bytes runs as
 * a callback, and the completion of what it sends comes after it returns, not inside it. */
static volatile LONG in_on_data, nested;

static void on_data_flagged(wsx_stream *s, wsx_buf *b)
{
    in_on_data = 1;
    wsx_stream_send_buf(s, b);
    wsx_stream_send(s, "!", 1);
    in_on_data = 0;
}

static void on_complete_flagged(wsx_stream *s, wsx_op_kind kind, const wsx_status *st)
{
    (void)s;
    (void)kind;
    (void)st;
    if (in_on_data)
        nested = 1;
}

Test(stream, open_outside_callbacks_runs_no_completion_inside_on_data)
{
    wsx_port *p = NULL;
    wsx_stream_callbacks cb = {on_data_flagged, NULL, on_close, on_complete_flagged, NULL};
    wsx_stream_opts so = {.skip_on_success = 1};
    wsx_stream_ref ref = {(wsx_stream *)&ref, 7};
    SOCKET srv, cli;
    wsx_stream *s;
    char got[4];
    ctx c;

    cr_assert_eq(wsx_port_create(&p, NULL), 0); /* no workers: all is delivered on this thread */
    ctx_init(&c);
    cli = t_pair("127.0.0.1:0", &srv);
    so.ref = &ref;
    cr_assert_eq(wsx_stream_open(p, srv, &so, &cb, &c, "abc", 3, &s), 0);
    cr_assert_not_null(s);
    cr_assert_eq(ref.s, s, "opts.ref names the stream");
    cr_assert_eq(nested, 0, "a send's completion ran inside on_data");
    t_recv_all(cli, got, 4);
    cr_assert_eq(memcmp(got, "abc!", 4), 0);
    /* The reference reaches the stream from here, and nothing once it has ended. */
    cr_assert_eq(wsx_stream_ref_send(ref, "R", 1), 0);
    while (wsx_port_poll(p, 100) == 0)
        ;
    t_recv_all(cli, got, 1);
    cr_assert_eq(got[0], 'R');
    closesocket(cli);
    poll_until_closed(p, &c);
    cr_assert_eq(wsx_stream_ref_send(ref, "R", 1), WSAENOTCONN);

    /* A failed open leaves the reference empty. */
    ref.s = (wsx_stream *)&ref;
    cr_assert_eq(wsx_stream_open(p, INVALID_SOCKET, &so, &cb, &c, NULL, 0, &s), WSAEINVAL);
    cr_assert_null(ref.s);
    cr_assert_eq(wsx_port_destroy(p), 0);
}

/* Opening outside callbacks never waits for the new stream's lock: the caller may hold a lock
 * of its own that the stream's first on_data (on a worker, holding the stream's lock) waits
 * for. Letting go of the open's pin once took the stream's lock, and the two waited for ever. */
static SRWLOCK user_lock = SRWLOCK_INIT;
static HANDLE data_seen;

static void on_data_takes_user_lock(wsx_stream *s, wsx_buf *b)
{
    (void)s;
    AcquireSRWLockExclusive(&user_lock);
    ReleaseSRWLockExclusive(&user_lock);
    wsx_buf_put(b);
    SetEvent(data_seen);
}

Test(stream, open_while_holding_a_lock_its_on_data_waits_for)
{
    wsx_port *p = port_with_workers(1);
    wsx_stream_callbacks cb = {on_data_takes_user_lock, NULL, on_close, NULL, NULL};
    wsx_stream_opts so = {.skip_on_success = 0}; /* the first read completes on the worker */

    data_seen = CreateEventW(NULL, FALSE, FALSE, NULL);
    for (int i = 0; i < 300; i++) {
        SOCKET srv, cli = t_pair("127.0.0.1:0", &srv);
        wsx_stream *st;
        ctx c;

        ctx_init(&c);
        cr_assert_eq(send(cli, "x", 1, 0), 1);
        AcquireSRWLockExclusive(&user_lock);
        cr_assert_eq(wsx_stream_open(p, srv, &so, &cb, &c, NULL, 0, &st), 0);
        ReleaseSRWLockExclusive(&user_lock);
        cr_assert_eq(WaitForSingleObject(data_seen, 10000), WAIT_OBJECT_0, "round %d", i);
        closesocket(cli);
        wait_closed(&c, 10000);
        CloseHandle(c.closed);
    }
    finish(p);
}

/* A write pump: on_complete of each send queues the next chunk. Each chunk must go once, in
 * order: the send it follows has left the queue before on_complete runs (it used to post the
 * finished chunk again, which the queue then freed under the kernel). */
#define PUMP_CHUNK 3000
#define PUMP_CHUNKS 200
static volatile LONG pump_next;

static void pump_chunk(wsx_stream *s)
{
    char b[PUMP_CHUNK];
    LONG k = pump_next++;
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = (char)pattern((size_t)k * PUMP_CHUNK + i);
    cr_assert_eq(wsx_stream_send(s, b, sizeof b), 0);
}

static void pump_on_complete(wsx_stream *s, wsx_op_kind kind, const wsx_status *st)
{
    if (kind != WSX_OP_SEND || st->wsa != 0)
        return;
    if (pump_next < PUMP_CHUNKS) {
        pump_chunk(s);
    } else if (pump_next == PUMP_CHUNKS) {
        wsx_stream_shutdown(s);
        pump_next++;
    }
}

static const wsx_stream_callbacks pump_cb = {drop_data, NULL, on_close, pump_on_complete, NULL};

Test(stream, a_send_from_on_complete_follows_the_one_that_completed)
{
    for (int skip = 0; skip < 2; skip++) {
        wsx_port *p = port_with_workers(2);
        wsx_stream_opts o = {0, 1, skip, 0, NULL};
        ctx c;
        SOCKET srv, cli = t_pair("127.0.0.1:0", &srv);
        size_t got = 0, bad = (size_t)-1;
        char b[8192];
        int n;

        ctx_init(&c);
        pump_next = 0;
        cr_assert_eq(wsx_stream_open(p, srv, &o, &pump_cb, &c, NULL, 0, &c.s), 0);
        pump_chunk(c.s);
        while ((n = recv(cli, b, sizeof b, 0)) > 0) {
            for (int i = 0; i < n; i++, got++)
                if (bad == (size_t)-1 && (unsigned char)b[i] != pattern(got))
                    bad = got;
        }
        cr_assert_eq(n, 0, "FIN after the last chunk (skip %d)", skip);
        cr_assert_eq(bad, (size_t)-1, "skip %d: first wrong byte at %zu", skip, bad);
        cr_assert_eq(got, (size_t)PUMP_CHUNK * PUMP_CHUNKS, "skip %d", skip);
        closesocket(cli);
        wait_closed(&c, 5000);
        finish(p);
    }
}

/* A graceful close from on_complete of a zero-byte read's wakeup lingers like any other: it
 * waits for the peer's FIN (the wakeup's 0 bytes were taken for EOF, the stream closed at once). */
static volatile LONG closed_early;

static void close_on_recv_complete(wsx_stream *s, wsx_op_kind kind, const wsx_status *st)
{
    if (kind == WSX_OP_RECV && st->wsa == 0)
        wsx_stream_close(s);
}

static void flag_close(wsx_stream *s, const wsx_status *why)
{
    InterlockedExchange(&closed_early, 1);
    on_close(s, why);
}

static const wsx_stream_callbacks close_oc_cb = {drop_data, NULL, flag_close,
                                                 close_on_recv_complete, NULL};

Test(stream, close_from_on_complete_of_a_wakeup_lingers_for_the_peer)
{
    wsx_port *p = port_with_workers(1);
    wsx_stream_opts o = {0, 1, 1, 0, NULL};
    ctx c;
    SOCKET srv, cli = t_pair("127.0.0.1:0", &srv);
    char b[16];

    ctx_init(&c);
    closed_early = 0;
    cr_assert_eq(wsx_stream_open(p, srv, &o, &close_oc_cb, &c, NULL, 0, &c.s), 0);
    Sleep(100); /* the zero-byte read is pending */
    cr_assert_eq(send(cli, "hello", 5, 0), 5);
    cr_assert_eq(recv(cli, b, sizeof b, 0), 0, "our FIN");
    Sleep(300);
    cr_assert_eq(closed_early, 0, "the stream closed before the peer's FIN: no linger");
    cr_assert_eq(shutdown(cli, SD_SEND), 0);
    wait_closed(&c, 5000);
    cr_assert_eq(c.why.wsa, 0);
    closesocket(cli);
    finish(p);
}

/* Small buffers join the last one's spare room; a quarter of a buffer or more is linked as is. */
Test(stream, send_queue_packs_small_buffers)
{
    wsx_buf_pool *pool;
    wsx__sendq q;
    wsx_buf *b[4];
    WSABUF wb[4];
    DWORD total;

    cr_assert_eq(wsx_buf_pool_create(&pool, 64, 0), 0);
    memset(&q, 0, sizeof q);
    for (int i = 0; i < 4; i++) {
        b[i] = wsx_buf_get(pool);
        b[i]->len = i == 2 ? 17 : 10; /* 17 > 64 / 4 */
        memset(b[i]->data, 'a' + i, b[i]->len);
        b[i]->off = i == 1 ? 2 : 0;
    }
    wsx__sendq_push(&q, b[0]);
    wsx__sendq_push(&q, b[1]);
    cr_assert_eq(q.queued, 18);
    cr_assert_eq(q.head, q.tail, "the second joined the first");
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 3);
    wsx__sendq_push(&q, b[2]);
    cr_assert_neq(q.head, q.tail, "a quarter of a buffer or more is not copied");
    wsx__sendq_push(&q, b[3]);
    cr_assert_eq(q.queued, 45);
    cr_assert_eq(wsx__sendq_gather(&q, wb, 4, MAXDWORD, &total), 2);
    cr_assert_eq(total, 45);
    cr_assert_eq(memcmp(wb[0].buf, "aaaaaaaaaabbbbbbbb", 18), 0);
    cr_assert_eq(memcmp(wb[1].buf, "cccccccccccccccccdddddddddd", 27), 0);
    wsx__sendq_advance(&q, 45);
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 0);
    cr_assert_eq(wsx_buf_pool_destroy(pool), 0);
}

/* Many small messages for a peer that does not read: the queue holds about its bytes, not a
 * buffer per message, and they arrive in order, also those added to a buffer whose start was
 * in flight. */
Test(stream, small_sends_to_a_slow_reader_share_buffers)
{
    wsx_port *p = port_with_workers(2);
    wsx_stream_opts o = {0, 1, 1, 0, NULL};
    ctx c;
    SOCKET srv, cli = t_pair("127.0.0.1:0", &srv);
    int n;
    size_t got = 0, bad = (size_t)-1, want = (16 << 20) + 2000 * 10;
    char *big = malloc(16 << 20), b[8192];
    wsx_stream_info in;

    cr_assert_not_null(big);
    ctx_init(&c);
    c.sink = 1;
    for (size_t i = 0; i < (16 << 20); i++)
        big[i] = (char)pattern(i);
    cr_assert_eq(wsx_stream_open(p, srv, &o, &echo_cb, &c, NULL, 0, &c.s), 0);
    cr_assert_eq(wsx_stream_send(c.s, big, 16 << 20), 0); /* more than the socket's buffers */
    for (size_t k = 0; k < 2000; k++) {
        char m[10];
        for (size_t i = 0; i < 10; i++)
            m[i] = (char)pattern((16 << 20) + k * 10 + i);
        cr_assert_eq(wsx_stream_send(c.s, m, 10), 0);
    }
    wsx_stream_get_info(c.s, &in);
    cr_assert_geq(in.queued, 2000 * 10, "the small messages wait in the queue");
    cr_assert_leq(wsx_buf_pool_outstanding(wsx_port_buffers(p)), in.queued / 65536 + 3,
                  "%lu buffers held for %lu bytes queued",
                  (unsigned long)wsx_buf_pool_outstanding(wsx_port_buffers(p)),
                  (unsigned long)in.queued);
    cr_assert_eq(wsx_stream_shutdown(c.s), 0);
    {
        DWORD ms = 10000;
        setsockopt(cli, SOL_SOCKET, SO_RCVTIMEO, (char *)&ms, sizeof ms);
    }
    while ((n = recv(cli, b, sizeof b, 0)) > 0)
        for (int i = 0; i < n; i++, got++)
            if (bad == (size_t)-1 && (unsigned char)b[i] != pattern(got))
                bad = got;
    cr_assert_eq(n, 0, "recv: %d after %lu bytes", WSAGetLastError(), (unsigned long)got);
    cr_assert_eq(bad, (size_t)-1, "first wrong byte at %lu", (unsigned long)bad);
    cr_assert_eq(got, want);
    closesocket(cli);
    wait_closed(&c, 5000);
    free(big);
    finish(p);
}

/* on_data for the bytes an open outside callbacks brings is a callback of the port like any
 * other: polling its own port from it is refused. It was not, and the stream's own send
 * completion and on_complete ran inside its on_data. */
static wsx_port *initial_port;
static int initial_poll_rc = -1, initial_destroy_rc = -1;

static void on_data_polls_own_port(wsx_stream *s, wsx_buf *b)
{
    in_on_data = 1; /* on_complete_flagged notes a completion inside */
    wsx_stream_send(s, "x", 1);
    initial_poll_rc = wsx_port_poll(initial_port, 500);
    initial_destroy_rc = wsx_port_destroy(initial_port);
    in_on_data = 0;
    wsx_buf_put(b);
}

Test(stream, on_data_for_initial_bytes_may_not_poll_or_destroy_its_port)
{
    wsx_stream_callbacks cb = {on_data_polls_own_port, NULL, on_close, on_complete_flagged, NULL};
    wsx_stream_opts so = {.skip_on_success = 1};
    SOCKET srv, cli;
    wsx_stream *s;
    char got[5];
    ctx c;

    cr_assert_eq(wsx_port_create(&initial_port, NULL), 0); /* no workers: this thread polls */
    ctx_init(&c);
    cli = t_pair("127.0.0.1:0", &srv);
    cr_assert_eq(wsx_stream_open(initial_port, srv, &so, &cb, &c, "init", 4, &s), 0);
    cr_assert_eq(initial_poll_rc, WSAEINVAL, "the poll from on_data gave %d", initial_poll_rc);
    cr_assert_eq(initial_destroy_rc, WSAEINVAL, "the destroy from on_data gave %d",
                 initial_destroy_rc);
    cr_assert_eq(nested, 0, "a completion of the stream ran inside its on_data");
    t_recv_all(cli, got, 1);
    cr_assert_eq(got[0], 'x');
    closesocket(cli);
    poll_until_closed(initial_port, &c);
    finish(initial_port);
}

/* on_close runs outside any delivery when a call from outside callbacks ends the stream (here
 * wsx_stream_close on the main thread). A stream it opens stays pinned until it returns, as in
 * any callback: the open let go of its pin when it returned, so a reset ending the new stream on
 * a worker freed its object, the next open took it, and a send through the first pointer
 * reached the second connection. */
typedef struct closer {
    wsx_port *p;
    SOCKET srv_x, cli_x, srv_y, cli_y;
    wsx_stream *x, *y;
    ctx cx, cy;
    LONG gen_before, gen_after;
    int send_rc;
    DWORD thread;
} closer;

static void on_close_opens(wsx_stream *s, const wsx_status *why)
{
    closer *k = wsx_stream_user(s);
    (void)why;
    k->thread = GetCurrentThreadId();
    cr_assert_eq(wsx_stream_open(k->p, k->srv_x, NULL, &echo_cb, &k->cx, NULL, 0, &k->x), 0);
    k->gen_before = wsx_stream_get_ref(k->x).gen;
    abortive_close(k->cli_x); /* a worker ends X meanwhile */
    WaitForSingleObject(k->cx.closed, 5000);
    Sleep(50); /* on_close of X has returned on the worker */
    k->gen_after = wsx_stream_get_ref(k->x).gen;
    cr_assert_eq(wsx_stream_open(k->p, k->srv_y, NULL, &echo_cb, &k->cy, NULL, 0, &k->y), 0);
    k->send_rc = wsx_stream_send(k->x, "to X", 4);
}

static HANDLE eof_seen;

static void on_eof_keeps_open(wsx_stream *s)
{
    (void)s;
    SetEvent(eof_seen);
}

Test(stream, a_stream_opened_in_on_close_outside_callbacks_stays_pinned)
{
    wsx_stream_callbacks cb = {on_data, on_eof_keeps_open, on_close_opens, NULL, NULL};
    wsx_port *p = port_with_workers(2);
    SOCKET srv, cli = t_pair("127.0.0.1:0", &srv);
    wsx_stream *a;
    closer k;
    char got[8];
    DWORD ms = 300;
    int n;

    memset(&k, 0, sizeof k);
    eof_seen = CreateEventW(NULL, TRUE, FALSE, NULL);
    k.p = p;
    ctx_init(&k.cx);
    ctx_init(&k.cy);
    k.cli_x = t_pair("127.0.0.1:0", &k.srv_x);
    k.cli_y = t_pair("127.0.0.1:0", &k.srv_y);
    cr_assert_eq(wsx_stream_open(p, srv, NULL, &cb, &k, NULL, 0, &a), 0);
    shutdown(cli, SD_SEND);
    /* A has seen the FIN: nothing of it is pending, so the close below ends it here. */
    cr_assert_eq(WaitForSingleObject(eof_seen, 5000), WAIT_OBJECT_0, "A saw no FIN");
    cr_assert_eq(wsx_stream_close(a), 0); /* on_close runs here, on this thread */
    cr_assert_eq(k.thread, GetCurrentThreadId());
    cr_assert_eq(k.cx.why.kind, WSX_KIND_PEER_RESET, "the reset did not end X on a worker");
    cr_assert_eq(k.gen_after, k.gen_before, "X's object was reused while on_close held it");
    cr_assert_neq(k.y, k.x, "the next open took X's object while on_close held its pointer");
    cr_assert_neq(k.send_rc, 0, "a send through the ended X was accepted");
    setsockopt(k.cli_y, SOL_SOCKET, SO_RCVTIMEO, (char *)&ms, sizeof ms);
    n = recv(k.cli_y, got, sizeof got, 0);
    cr_assert(n < 0 && WSAGetLastError() == WSAETIMEDOUT, "Y's peer received %d bytes", n);
    closesocket(k.cli_y);
    wait_closed(&k.cy, 5000);
    closesocket(cli);
    finish(p);
}

/* A callback of another port run in this thread's poll of p (an inline completion of a send that
 * p's callback made on that port's stream, drained after it returns) may not destroy p either:
 * the poll goes on with p. It got WSAEINPROGRESS, which no retry there could change. */
static wsx_port *polled_port;
static wsx_stream *other_stream;
static int destroy_in_drain_rc = -1;

static void on_complete_destroys_polled(wsx_stream *s, wsx_op_kind kind, const wsx_status *st)
{
    (void)s;
    (void)st;
    if (kind == WSX_OP_SEND && destroy_in_drain_rc == -1)
        destroy_in_drain_rc = wsx_port_destroy(polled_port);
}

static void send_on_other_port(wsx_op *op, const wsx_status *st)
{
    (void)op;
    (void)st;
    wsx_stream_send(other_stream, "q", 1);
}

Test(stream, a_callback_run_in_a_poll_of_the_port_may_not_destroy_it)
{
    wsx_stream_callbacks cb = {on_data, NULL, on_close, on_complete_destroys_polled, NULL};
    wsx_stream_opts so = {.skip_on_success = 1};
    wsx_port *q = NULL;
    SOCKET srv, cli;
    wsx_op op;
    char got;
    ctx c;

    cr_assert_eq(wsx_port_create(&polled_port, NULL), 0);
    cr_assert_eq(wsx_port_create(&q, NULL), 0);
    ctx_init(&c);
    cli = t_pair("127.0.0.1:0", &srv);
    cr_assert_eq(wsx_stream_open(q, srv, &so, &cb, &c, NULL, 0, &other_stream), 0);
    wsx_op_init(&op, WSX_OP_USER, send_on_other_port, NULL, NULL);
    cr_assert_eq(wsx_port_post(polled_port, &op, 0, 0), 0);
    cr_assert_eq(wsx_port_poll(polled_port, 1000), 0);
    t_recv_all(cli, &got, 1);
    cr_assert_eq(got, 'q');
    cr_assert_eq(destroy_in_drain_rc, WSAEINVAL, "destroy gave %d", destroy_in_drain_rc);
    cr_assert_eq(wsx_port_destroy(polled_port), 0, "outside the poll it can");
    closesocket(cli);
    poll_until_closed(q, &c);
    finish(q);
}
