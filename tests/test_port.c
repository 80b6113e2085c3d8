#include "helpers.h"

#include <stdio.h>

TestSuite(port, .init = t_startup, .timeout = 60);

typedef struct hits {
    volatile LONG count;
    wsx_status last;
    DWORD sleep_ms;
} hits;

static void count_fn(wsx_op *op, const wsx_status *st)
{
    hits *h = op->user;
    h->last = *st;
    if (h->sleep_ms)
        Sleep(h->sleep_ms);
    InterlockedIncrement(&h->count);
}

static wsx_port *new_port(unsigned inline_cap)
{
    wsx_port *p = NULL;
    wsx_port_opts o = {inline_cap, 4096, 0, 0, 0, 0};
    cr_assert_eq(wsx_port_create(&p, &o), 0);
    return p;
}

/* A completion addressed to an owner that has moved to a new generation is dropped. */
Test(port, stale_generation_is_dropped)
{
    wsx_port *p = new_port(0);
    volatile LONG gen = 1;
    hits h = {0};
    wsx_op op;
    wsx_port_stats s;

    wsx_op_init(&op, WSX_OP_USER, count_fn, NULL, &gen);
    op.user = &h;
    cr_assert_eq(wsx_port_post(p, &op, 5, 0), 0);
    gen = 2; /* the owner was closed and reused while the completion was queued */
    cr_assert_eq(wsx_port_poll(p, 1000), 0);
    cr_assert_eq(h.count, 0, "stale completion delivered");
    wsx_port_get_stats(p, &s);
    cr_assert_eq(s.stale_dropped, 1);
    cr_assert_eq(wsx_op_is_posted(&op), 0, "the op is free again");

    cr_assert_eq(wsx_port_post(p, &op, 5, (LONG)0xC000020DL), 0);
    cr_assert_eq(wsx_port_poll(p, 1000), 0);
    cr_assert_eq(h.count, 1);
    cr_assert_eq(h.last.bytes, 5);
    cr_assert_eq(h.last.wsa, WSAECONNRESET);
    cr_assert_eq(h.last.kind, WSX_KIND_PEER_RESET);
    cr_assert_eq(wsx_port_poll(p, 10), WSAETIMEDOUT);
    cr_assert_eq(wsx_port_destroy(p), 0);
}

Test(port, double_post_is_refused)
{
    wsx_port *p = new_port(0);
    hits h = {0};
    wsx_op op;

    wsx_op_init(&op, WSX_OP_USER, count_fn, NULL, NULL);
    op.user = &h;
    cr_assert_eq(wsx_port_post(p, &op, 0, 0), 0);
    cr_assert_eq(wsx_port_post(p, &op, 0, 0), WSAEALREADY);
    cr_assert_eq(wsx_port_poll(p, 1000), 0);
    cr_assert_eq(wsx_port_poll(p, 10), WSAETIMEDOUT, "only one packet was queued");
    cr_assert_eq(h.count, 1);
    cr_assert_eq(wsx_port_destroy(p), 0);
}

/* Stop while every worker is inside a slow handler: stop returns once all have exited. The port
 * is FIFO, so what was queued before the sentinels is handled first, exactly once. */
Test(port, stop_with_busy_workers_joins_all)
{
    enum { N = 200 };
    wsx_port *p = new_port(0);
    static wsx_op ops[N];
    hits h = {0};
    LONG before;

    h.sleep_ms = 5;
    for (int i = 0; i < N; i++) {
        wsx_op_init(&ops[i], WSX_OP_USER, count_fn, NULL, NULL);
        ops[i].user = &h;
    }
    cr_assert_eq(wsx_port_start(p, 4), 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(wsx_port_post(p, &ops[i], 0, 0), 0);
    Sleep(20);
    cr_assert_lt(h.count, N, "workers are busy when stop is called");
    cr_assert_eq(wsx_port_stop(p), 0);
    before = h.count;
    cr_assert_eq(before, N, "packets queued before the stop were handled first");
    Sleep(50);
    cr_assert_eq(h.count, before, "no worker runs after stop returned");
    cr_assert_eq(wsx_port_poll(p, 0), WSAETIMEDOUT, "nothing delivered twice, no sentinel left");
    for (int i = 0; i < N; i++)
        cr_assert_eq(wsx_op_is_posted(&ops[i]), 0);
    cr_assert_eq(wsx_port_destroy(p), 0);
}

/* Idle workers may dequeue several sentinels in one batch; the extras are passed on, so every
 * worker exits. Repeated to give the batching a chance. */
Test(port, stop_idle_workers_repeatedly)
{
    for (int round = 0; round < 20; round++) {
        wsx_port *p = new_port(0);
        cr_assert_eq(wsx_port_start(p, 8), 0);
        cr_assert_eq(wsx_port_stop(p), 0);
        cr_assert_eq(wsx_port_poll(p, 0), WSAETIMEDOUT, "no sentinel left behind");
        cr_assert_eq(wsx_port_destroy(p), 0);
    }
}

/* Inline completions wait for the flush (never run inside the posting call), keep their order,
 * and past the cap the next goes through the port. */
Test(port, inline_completions_are_deferred_and_capped)
{
    wsx_port *p = new_port(2);
    hits h = {0};
    unsigned streak = 0;
    wsx_op a, b, c;
    wsx_port_stats s;
    wsx_op *ops[3] = {&a, &b, &c};

    for (int i = 0; i < 3; i++) {
        wsx_op_init(ops[i], WSX_OP_RECV, count_fn, NULL, NULL);
        ops[i]->user = &h;
        ops[i]->streak = &streak;
        ops[i]->port = p;
        cr_assert_eq(wsx_op_begin(ops[i]), 0);
        wsx__port_complete(ops[i], 10 + (DWORD)i, 0, 0);
    }
    cr_assert_eq(h.count, 0, "nothing runs inside the posting call");
    wsx__port_flush();
    cr_assert_eq(h.count, 2, "two inline, the third was requeued");
    cr_assert_eq(h.last.bytes, 11);
    wsx_port_get_stats(p, &s);
    cr_assert_eq(s.inline_done, 2);
    cr_assert_eq(s.requeued, 1);
    cr_assert_eq(wsx_port_poll(p, 1000), 0);
    cr_assert_eq(h.count, 3);
    cr_assert_eq(h.last.bytes, 12);
    cr_assert_eq(h.last.kind, WSX_KIND_OK);

    /* An immediate failure is delivered the same way, with its WSA code. */
    cr_assert_eq(wsx_op_begin(&a), 0);
    wsx__port_complete(&a, 0, 0, WSAECONNRESET);
    wsx__port_flush();
    cr_assert_eq(h.count, 4);
    cr_assert_eq(h.last.wsa, WSAECONNRESET);
    cr_assert_eq(h.last.ntstatus, 0);
    cr_assert_eq(h.last.kind, WSX_KIND_PEER_RESET);
    cr_assert_eq(wsx_port_destroy(p), 0);
}

Test(port, bad_arguments)
{
    wsx_port *p = new_port(0);
    cr_assert_eq(wsx_port_create(NULL, NULL), WSAEINVAL);
    cr_assert_eq(wsx_port_start(p, 0), WSAEINVAL);
    cr_assert_eq(wsx_port_start(p, 65), WSAEINVAL);
    cr_assert_eq(wsx_port_associate(p, INVALID_SOCKET, 0, NULL), WSAEINVAL);
    cr_assert_eq(wsx_port_post(p, NULL, 0, 0), WSAEINVAL);
    cr_assert_eq(wsx_port_poll(NULL, 0), WSAEINVAL);
    cr_assert_eq(wsx_port_destroy(p), 0);
}

Test(port, buffer_pool)
{
    wsx_buf_pool *pool;
    wsx_buf *a, *b, *c;

    cr_assert_eq(wsx_buf_pool_create(&pool, 0, 0), WSAEINVAL);
    cr_assert_eq(wsx_buf_pool_create(&pool, 1024, 2), 0);
    a = wsx_buf_get(pool);
    b = wsx_buf_get(pool);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_eq(a->cap, 1024);
    cr_assert_null(wsx_buf_get(pool), "bounded at 2");
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 2);
    cr_assert_eq(wsx_buf_pool_destroy(pool), WSAEINPROGRESS, "buffers still out");
    memset(a->data, 0x5A, a->cap);
    wsx_buf_put(a);
    c = wsx_buf_get(pool);
    cr_assert_eq(c, a, "reused, not allocated");
    cr_assert_eq(c->off, 0);
    cr_assert_eq(c->len, 0);
    cr_assert_eq(wsx_buf_pool_allocated(pool), 2);
    wsx_buf_put(b);
    wsx_buf_put(c);
    wsx_buf_put(NULL);
    cr_assert_eq(wsx_buf_pool_destroy(pool), 0);
}

/* One dequeue takes `batch` entries: 1 by default under Wine (each entry is a round trip there, and
 * a batch only adds one more to find the queue empty), 64 on Windows; the option overrides. */
Test(port, dequeue_batch)
{
    for (int run = 0; run < 2; run++) {
        wsx_port_opts o = {0, 4096, 0, run ? 64u : 0u, 0, 0};
        wsx_port *p = NULL;
        hits h = {0};
        wsx_op ops[3];
        LONG want = run ? 3 : (t_on_wine() ? 1 : 3);

        cr_assert_eq(wsx_port_create(&p, &o), 0);
        for (int i = 0; i < 3; i++) {
            wsx_op_init(&ops[i], WSX_OP_USER, count_fn, NULL, NULL);
            ops[i].user = &h;
            cr_assert_eq(wsx_port_post(p, &ops[i], 1, 0), 0);
        }
        cr_assert_eq(wsx_port_poll(p, 1000), 0);
        cr_assert_eq(h.count, want, "batch %s: %ld delivered by one poll", run ? "64" : "default",
                     (long)h.count);
        while (h.count < 3)
            cr_assert_eq(wsx_port_poll(p, 1000), 0);
        cr_assert_eq(wsx_port_destroy(p), 0);
    }
}

/* Trim frees idle buffers only; big buffers (VirtualAlloc'd data, page-aligned) work the same. */
Test(port, buffer_pool_trim)
{
    wsx_buf_pool *pool;
    wsx_buf *b[10];

    cr_assert_eq(wsx_buf_pool_create(&pool, 65536, 0), 0);
    for (int i = 0; i < 10; i++) {
        b[i] = wsx_buf_get(pool);
        cr_assert_not_null(b[i]);
        cr_assert_eq((ULONG_PTR)b[i]->data % 4096, 0, "page-aligned");
        memset(b[i]->data, i, b[i]->cap);
    }
    for (int i = 0; i < 7; i++)
        wsx_buf_put(b[i]);
    cr_assert_eq(wsx_buf_pool_trim(pool, 2), 5, "7 idle, keep 2");
    cr_assert_eq(wsx_buf_pool_allocated(pool), 5);
    cr_assert_eq(wsx_buf_pool_outstanding(pool), 3);
    cr_assert_eq((unsigned char)b[9]->data[65535], 9, "buffers out are untouched");
    cr_assert_eq(wsx_buf_pool_trim(pool, 0), 2);
    cr_assert_eq(wsx_buf_pool_trim(NULL, 0), 0);
    for (int i = 7; i < 10; i++)
        wsx_buf_put(b[i]);
    cr_assert_eq(wsx_buf_pool_destroy(pool), 0);
}

/* Every entry point takes NULL and impossible values without crashing: an error code where it
 * returns one, zeroed output where it fills a struct. */
Test(port, null_and_bad_input_everywhere)
{
    wsx_port_stats ps;
    wsx_stream_info si;
    wsx_listener_stats ls;
    wsx_status st;
    wsx_sockaddr a;
    const wsx_ext *x;
    char text[WSX_ADDRSTRLEN];
    SOCKET closed = t_socket(AF_INET, SOCK_STREAM);

    closesocket(closed);
    memset(&ps, 0xAA, sizeof ps);
    wsx_port_get_stats(NULL, &ps);
    cr_assert_eq(ps.dequeued, 0);
    wsx_port_get_stats(NULL, NULL);
    memset(&si, 0xAA, sizeof si);
    wsx_stream_get_info(NULL, &si);
    cr_assert_eq(si.queued, 0);
    memset(&ls, 0xAA, sizeof ls);
    wsx_listener_get_stats(NULL, &ls);
    cr_assert_eq(ls.accepted, 0);
    cr_assert_eq(wsx_buf_pool_outstanding(NULL), 0);
    cr_assert_eq(wsx_buf_pool_allocated(NULL), 0);
    cr_assert_null(wsx_buf_get(NULL));
    cr_assert_eq(wsx_buf_pool_destroy(NULL), 0);
    st = wsx_status_from_entry(NULL, 0);
    cr_assert_eq(st.wsa, WSAEFAULT);
    cr_assert_eq(wsx_op_begin(NULL), WSAEFAULT);
    wsx_op_init(NULL, WSX_OP_USER, NULL, NULL, NULL);
    wsx_op_cancel_begin(NULL);
    cr_assert_eq(wsx_op_is_posted(NULL), 0);
    cr_assert_eq(wsx_ext_get(closed, &x), WSAENOTSOCK);
    cr_assert_eq(wsx_listener_recycle(NULL, INVALID_SOCKET), WSAEINVAL);
    cr_assert_eq(wsx_listener_address(NULL, &a), WSAEINVAL);
    cr_assert_eq(wsx_connect(NULL, NULL, NULL, 0, NULL, NULL), WSAEINVAL);
    memset(&a, 0, sizeof a);
    a.ss.ss_family = AF_UNIX; /* wrong family */
    a.len = (int)sizeof a.ss;
    cr_assert_eq(wsx_addr_format((struct sockaddr *)&a.ss, a.len, text, sizeof text),
                 WSAEAFNOSUPPORT);
    cr_assert_eq(wsx_stream_transmit_file(NULL, NULL, 0, 0, NULL, 0, NULL, 0), WSAEINVAL);
    cr_assert_eq(wsx_stream_ref_close(wsx_stream_get_ref(NULL), WSX_CLOSE_RESET), WSAEINVAL);
    cr_assert_eq(wsx_trace_open(NULL), WSAEINVAL);
    cr_assert_eq(wsx_port_stop(NULL), WSAEINVAL);
    cr_assert_eq(wsx_port_destroy(NULL), 0);
    cr_assert_null(wsx_port_handle(NULL));
    cr_assert_null(wsx_port_buffers(NULL));
}

static void noop_data(wsx_stream *s, wsx_buf *b)
{
    (void)s;
    wsx_buf_put(b);
}

static void dummy_accept(wsx_listener *l, const wsx_accepted *a, void *user)
{
    (void)l, (void)a, (void)user;
}

static void dummy_connect(SOCKET s, const wsx_status *st, DWORD sent, void *user)
{
    (void)s, (void)st, (void)sent, (void)user;
}

/* Closed sockets, wrong families and impossible sizes give error codes, never a crash. */
Test(port, closed_sockets_wrong_families_bad_sizes)
{
    wsx_port *p = new_port(0);
    wsx_stream_callbacks cb = {noop_data, NULL, NULL, NULL, NULL};
    wsx_stream *s = NULL;
    SOCKET closed = t_socket(AF_INET, SOCK_STREAM), srv, cli;
    wsx_sockaddr unix_addr, v4 = t_addr("127.0.0.1:1");
    wsx_listener *l = NULL;
    const wsx_ext *x;
    char buf[WSX_ACCEPT_BUF_LEN(0)];
    OVERLAPPED ov;
    char big[8];

    closesocket(closed);
    cr_assert_neq(wsx_stream_open(p, closed, NULL, &cb, NULL, NULL, 0, &s), 0);
    cr_assert_null(s);
    memset(&unix_addr, 0, sizeof unix_addr);
    unix_addr.ss.ss_family = AF_UNIX;
    unix_addr.len = (int)sizeof unix_addr.ss;
    cr_assert_eq(wsx_listener_open(p, &unix_addr, NULL, dummy_accept, NULL, &l), WSAEINVAL);
    cr_assert_eq(wsx_connect(p, &unix_addr, NULL, 0, dummy_connect, NULL), WSAEINVAL);
    v4.len = 3; /* shorter than a sockaddr_in */
    cr_assert_eq(wsx_connect(p, &v4, NULL, 0, dummy_connect, NULL), WSAEINVAL);
    memset(&ov, 0, sizeof ov);
    cli = t_pair("127.0.0.1:0", &srv);
    cr_assert_eq(wsx_ext_get(cli, &x), 0);
    cr_assert_eq(
        wsx_accept_post(x, closed, closed, buf, 0, WSX_ACCEPT_ADDR_LEN, WSX_ACCEPT_ADDR_LEN, &ov),
        WSAEINVAL);
    /* A stream on a live socket: bad sizes, then everything after its end. */
    cr_assert_eq(wsx_stream_open(p, srv, NULL, &cb, NULL, big, 70000, &s), WSAEINVAL,
                 "initial data larger than a buffer");
    cli = t_pair("127.0.0.1:0", &srv);
    cr_assert_eq(wsx_stream_open(p, srv, NULL, &cb, NULL, NULL, 0, &s), 0);
    cr_assert_eq(wsx_stream_send(s, NULL, 5), WSAEINVAL);
    cr_assert_eq(wsx_stream_transmit_file(s, INVALID_HANDLE_VALUE, 0, 1, NULL, 0, NULL, 0),
                 WSAEINVAL);
    cr_assert_eq(wsx_stream_shutdown(s), 0);
    cr_assert_eq(wsx_stream_send(s, "late", 4), WSAESHUTDOWN, "no send after shutdown");
    closesocket(cli);
}

/* The trace writes every line and an end line that counts drops, closes, opens again on another
 * file, and a path it cannot create leaves it closed. */
static int trace_lines(const char *path, char *first, size_t cap, char *last)
{
    FILE *f = fopen(path, "rb");
    char line[1024];
    int n = 0;

    cr_assert_not_null(f, "trace file %s", path);
    while (fgets(line, sizeof line, f)) {
        if (n++ == 0)
            snprintf(first, cap, "%s", line);
        snprintf(last, cap, "%s", line);
    }
    fclose(f);
    return n;
}

Test(port, trace_writes_closes_and_opens_again)
{
    char path[2][MAX_PATH + 64], tmp[MAX_PATH], first[1024], last[1024];
    wsx_status st = wsx_status_from_wsa(WSAECONNRESET);

    cr_assert_gt(GetTempPathA(sizeof tmp, tmp), 0);
    for (int k = 0; k < 2; k++) {
        snprintf(path[k], sizeof path[k], "%swsx-trace-%lu-%d.jsonl", tmp, GetCurrentProcessId(),
                 k);
        cr_assert_eq(wsx_trace_open(path[k]), 0);
        cr_assert_eq(wsx_trace_enabled(), 1);
        for (int i = 0; i < 100; i++)
            wsx__trace_event((unsigned long long)i + 1, 1, "recv", "done", 5, &st, NULL, 0, NULL);
        wsx_trace_close();
        wsx_trace_close(); /* twice: no effect */
        cr_assert_eq(wsx_trace_enabled(), 0);
        cr_assert_eq(trace_lines(path[k], first, sizeof first, last), 101, "trace %d", k);
        cr_assert_not_null(strstr(first, "\"conn\":1,"), "%s", first);
        cr_assert_not_null(strstr(first, "\"wsa_name\":\"WSAECONNRESET\""), "%s", first);
        cr_assert_not_null(strstr(first, "\"win32\":10054,\"win32_name\":\"WSAECONNRESET\""), "%s",
                           first);
        cr_assert_null(strstr(first, "\"nt"),
                       "a code that did not come from the kernel has no "
                       "NTSTATUS: %s",
                       first);
        cr_assert_not_null(strstr(last, "\"phase\":\"end\",\"dropped\":0"), "%s", last);
        cr_assert(DeleteFileA(path[k]));
    }
    cr_assert_neq(wsx_trace_open("Z:\\no\\such\\directory\\trace.jsonl"), 0);
    cr_assert_eq(wsx_trace_enabled(), 0);
    /* A trace that cannot be opened leaves the open one running; the same path reopens. */
    cr_assert_eq(wsx_trace_open(path[0]), 0);
    cr_assert_eq(wsx_trace_open(path[0]), 0);
    wsx__trace_event(1, 1, "recv", "done", 5, &st, NULL, 0, NULL);
    cr_assert_neq(wsx_trace_open("Z:\\no\\such\\directory\\trace.jsonl"), 0);
    cr_assert_eq(wsx_trace_enabled(), 1, "the open trace goes on");
    wsx__trace_event(2, 1, "recv", "done", 5, &st, NULL, 0, NULL);
    wsx_trace_close();
    cr_assert_eq(trace_lines(path[0], first, sizeof first, last), 3);
    cr_assert_not_null(strstr(last, "\"phase\":\"end\""), "%s", last);
    cr_assert(DeleteFileA(path[0]));
}

typedef struct pipe_sink {
    HANDLE rd;
    char *data;
    size_t len, cap;
} pipe_sink;

static DWORD WINAPI sink_fn(void *arg)
{
    pipe_sink *k = arg;
    DWORD n;

    Sleep(300); /* the trace closes meanwhile, its ring full */
    for (;;) {
        if (k->cap - k->len < 65536) {
            k->cap = k->cap * 2 + 65536;
            k->data = realloc(k->data, k->cap);
            if (k->data == NULL)
                return 1;
        }
        if (!ReadFile(k->rd, k->data + k->len, 65536, &n, NULL) || n == 0)
            return 0;
        k->len += n;
    }
}

/* A trace whose reader falls behind drops lines and says how many in its end line, which must
 * not be dropped itself (it was queued behind the full ring). */
Test(port, trace_end_line_survives_a_full_ring)
{
    HANDLE wr, old = GetStdHandle(STD_OUTPUT_HANDLE), t;
    wsx_status st = wsx_status_from_wsa(WSAECONNRESET);
    pipe_sink k = {0};
    long long dropped = -1;
    char *end;

    cr_assert(CreatePipe(&k.rd, &wr, NULL, 4096));
    /* "-" until the close: the trace then leaves the handle to us, as it leaves stdout. */
    cr_assert(SetStdHandle(STD_OUTPUT_HANDLE, wr));
    cr_assert_eq(wsx_trace_open("-"), 0);
    for (int i = 0; i < 20000; i++) /* ~4 MiB of lines against a 1 MiB ring nobody empties */
        wsx__trace_event((unsigned long long)i + 1, 1, "recv", "done", 5, &st, NULL, 0, NULL);
    t = CreateThread(NULL, 0, sink_fn, &k, 0, NULL);
    cr_assert_not_null(t);
    wsx_trace_close();
    cr_assert(SetStdHandle(STD_OUTPUT_HANDLE, old));
    CloseHandle(wr); /* the reader's EOF */
    cr_assert_eq(WaitForSingleObject(t, 10000), WAIT_OBJECT_0);
    CloseHandle(t);
    CloseHandle(k.rd);
    cr_assert_gt(k.len, 0);
    k.data[k.len - 1] = '\0';
    end = strrchr(k.data, '\n');
    end = end ? end + 1 : k.data;
    cr_assert_eq(sscanf(end, "{\"op\":\"trace\",\"phase\":\"end\",\"dropped\":%lld}", &dropped), 1,
                 "no end line last: %.200s", end);
    cr_assert_gt(dropped, 0, "the ring cannot have held every line");
    free(k.data);
}

/* Packets that are not a wsx_op's (another completion key) are never read as one. */
Test(port, packets_with_other_keys_are_ignored)
{
    wsx_port *p = new_port(0);
    struct {
        OVERLAPPED ov;
        unsigned char after[sizeof(wsx_op)]; /* what deliver() would read as the op's fields */
    } foreign;
    hits h = {0};
    wsx_op op;
    wsx_port_stats s;

    memset(&foreign, 0xAB, sizeof foreign);
    cr_assert(PostQueuedCompletionStatus(wsx_port_handle(p), 3, 77, &foreign.ov));
    wsx_op_init(&op, WSX_OP_USER, count_fn, NULL, NULL);
    op.user = &h;
    cr_assert_eq(wsx_port_post(p, &op, 5, 0), 0);
    for (int i = 0; i < 10 && h.count == 0; i++)
        wsx_port_poll(p, 100);
    cr_assert_eq(h.count, 1, "the op behind it still delivered");
    wsx_port_get_stats(p, &s);
    cr_assert_eq(s.dequeued, 1, "the foreign packet was not taken for an op");
    cr_assert_eq(s.stale_dropped, 0);
    cr_assert_eq(wsx_port_destroy(p), 0);
}

/* A user's op completed through wsx_port_handle (key 0, never wsx_port_post: no op->port) is
 * dropped when stale or completed twice, counted on the port it came from; a packet with key 1
 * and no OVERLAPPED (a user's wake-up) does not stop a worker. */
Test(port, user_packets_on_the_port_handle)
{
    wsx_port *p = new_port(0);
    volatile LONG gen = 1;
    hits h = {0};
    wsx_op op;
    wsx_port_stats s;

    cr_assert_eq(wsx_port_start(p, 1), 0);
    wsx_op_init(&op, WSX_OP_USER, count_fn, NULL, &gen);
    op.user = &h;
    cr_assert_eq(wsx_op_begin(&op), 0);
    gen = 2; /* the owner was reused: the completion is not for it */
    cr_assert(PostQueuedCompletionStatus(wsx_port_handle(p), 0, 0, &op.ov));
    cr_assert(PostQueuedCompletionStatus(wsx_port_handle(p), 0, 0, &op.ov));
    cr_assert(PostQueuedCompletionStatus(wsx_port_handle(p), 0, 1, NULL));
    for (int i = 0; i < 100; i++) {
        wsx_port_get_stats(p, &s);
        if (s.stale_dropped == 2)
            break;
        Sleep(10);
    }
    cr_assert_eq(s.stale_dropped, 2, "one stale, one second completion");
    cr_assert_eq(h.count, 0);
    gen = 1;
    wsx_op_init(&op, WSX_OP_USER, count_fn, NULL, &gen);
    op.user = &h;
    cr_assert_eq(wsx_op_begin(&op), 0);
    cr_assert(PostQueuedCompletionStatus(wsx_port_handle(p), 0, 0, &op.ov));
    for (int i = 0; i < 100 && h.count == 0; i++)
        Sleep(10);
    cr_assert_eq(h.count, 1, "the worker still runs after the key-1 packet");
    cr_assert_eq(wsx_port_destroy(p), 0);
}

static DWORD WINAPI stop_fn(void *arg)
{
    return (DWORD)wsx_port_stop(arg);
}

static volatile LONG destroy_in_worker = -1;

static void destroy_fn(wsx_op *op, const wsx_status *st)
{
    (void)st;
    InterlockedExchange(&destroy_in_worker, wsx_port_destroy(op->user));
}

/* A poll that is not a worker's round (a thread polling by hand while the workers run, or a poll
 * nested in a callback) gives a stop sentinel it took back: the worker it was meant for gets it
 * and wsx_port_stop returns. And a worker cannot destroy its own port. */
Test(port, stop_sentinels_reach_the_workers)
{
    wsx_port *p = new_port(0);
    hits h = {0, {0}, 600};
    wsx_op busy, d;
    HANDLE t;
    int took = 0;

    cr_assert_eq(wsx_port_start(p, 1), 0);
    wsx_op_init(&d, WSX_OP_USER, destroy_fn, NULL, NULL);
    d.user = p;
    cr_assert_eq(wsx_port_post(p, &d, 0, 0), 0);
    for (int i = 0; i < 200 && destroy_in_worker == -1; i++)
        Sleep(5);
    cr_assert_eq(destroy_in_worker, WSAEINVAL, "destroy from the port's own worker");

    wsx_op_init(&busy, WSX_OP_USER, count_fn, NULL, NULL);
    busy.user = &h; /* the worker sleeps 600 ms in it */
    cr_assert_eq(wsx_port_post(p, &busy, 0, 0), 0);
    Sleep(100);
    t = CreateThread(NULL, 0, stop_fn, p, 0, NULL);
    for (int i = 0; i < 20 && !took; i++)
        took = wsx_port_poll(p, 20) == WSAESHUTDOWN; /* this thread takes the sentinel first */
    cr_assert(took, "the hand poll saw the sentinel");
    cr_assert_eq(WaitForSingleObject(t, 5000), WAIT_OBJECT_0, "wsx_port_stop hung");
    CloseHandle(t);
    cr_assert_eq(h.count, 1);
    cr_assert_eq(wsx_port_destroy(p), 0);
}

/* A callback may poll another port, not its own: what that poll took could be the calling
 * stream's own completions, delivered inside its callback. */
static wsx_port *own_port, *other_port;
static volatile LONG own_rc = -1, other_rc = -1;

static void poll_from_callback(wsx_op *op, const wsx_status *st)
{
    (void)op;
    (void)st;
    own_rc = wsx_port_poll(own_port, 0);
    other_rc = wsx_port_poll(other_port, 0);
}

Test(port, a_callback_may_not_poll_its_own_port)
{
    wsx_op op;

    cr_assert_eq(wsx_port_create(&own_port, NULL), 0);
    cr_assert_eq(wsx_port_create(&other_port, NULL), 0);
    wsx_op_init(&op, WSX_OP_USER, poll_from_callback, NULL, NULL);
    cr_assert_eq(wsx_port_post(own_port, &op, 0, 0), 0);
    cr_assert_eq(wsx_port_poll(own_port, 1000), 0);
    cr_assert_eq(own_rc, WSAEINVAL);
    cr_assert_eq(other_rc, WSAETIMEDOUT, "another port can be polled");
    cr_assert_eq(wsx_port_poll(own_port, 0), WSAETIMEDOUT, "outside callbacks it can");
    cr_assert_eq(wsx_port_destroy(own_port), 0);
    cr_assert_eq(wsx_port_destroy(other_port), 0);
}

/* A buffer of the port's pool still held (an on_data's, kept) would outlive the pool. */
Test(port, destroy_waits_for_the_buffers_the_program_holds)
{
    wsx_port *p = NULL;
    wsx_buf *b;

    cr_assert_eq(wsx_port_create(&p, NULL), 0);
    b = wsx_buf_get(wsx_port_buffers(p));
    cr_assert_not_null(b);
    cr_assert_eq(wsx_port_destroy(p), WSAEINPROGRESS);
    wsx_buf_put(b);
    cr_assert_eq(wsx_port_destroy(p), 0);
}

/* A callback of the port destroying it: the round that runs the callback would go on with a freed
 * port (it did: destroy returned 0 and the poll crashed or hung). And a poll on another thread is
 * still in the port. */
static wsx_port *doomed;
static int destroy_rc = -1;

static void destroy_from_callback(wsx_op *op, const wsx_status *st)
{
    (void)op;
    (void)st;
    destroy_rc = wsx_port_destroy(doomed);
}

static DWORD WINAPI poll_for_a_while(void *arg)
{
    (void)arg;
    return (DWORD)wsx_port_poll(doomed, 1500);
}

Test(port, destroy_from_a_callback_or_during_a_poll_is_refused)
{
    wsx_op op;
    HANDLE t;
    DWORD rc;

    cr_assert_eq(wsx_port_create(&doomed, NULL), 0);
    wsx_op_init(&op, WSX_OP_USER, destroy_from_callback, NULL, NULL);
    cr_assert_eq(wsx_port_post(doomed, &op, 0, 0), 0);
    cr_assert_eq(wsx_port_poll(doomed, 1000), 0);
    cr_assert_eq(destroy_rc, WSAEINVAL, "destroy from the port's own callback gave %d", destroy_rc);

    t = CreateThread(NULL, 0, poll_for_a_while, NULL, 0, NULL);
    cr_assert_not_null(t);
    Sleep(300);
    cr_assert_eq(wsx_port_destroy(doomed), WSAEINPROGRESS, "destroyed under another's poll");
    cr_assert_eq(WaitForSingleObject(t, 5000), WAIT_OBJECT_0);
    GetExitCodeThread(t, &rc);
    CloseHandle(t);
    cr_assert_eq(rc, WSAETIMEDOUT);
    cr_assert_eq(wsx_port_destroy(doomed), 0);
}
