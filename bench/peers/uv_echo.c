/* uv-echo: the echo server a libuv user would write (Windows build, static libuv).
 *
 *   uv-echo [--listen IP:PORT] [--threads 1] [--buffer-size BYTES]
 *
 * One loop on one thread, as libuv is meant to be used (a libuv loop belongs to one thread, and
 * sharing a listener between loops is not part of its Windows API): --threads accepts 1 only.
 * Reading follows libuv's own pattern: the buffer is allocated when data is there (alloc_cb),
 * written back with uv_write and freed when the write completes; reading stops while a write is
 * pending, so a slow reader stops the server reading from it.
 * Prints "listening on IP:PORT"; SIGINT stops it. */
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct client {
    uv_tcp_t tcp; /* first: the handle's address is the client's */
    uv_write_t req;
    uv_buf_t out;
} client;

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sigint;
static size_t buffer_size = 65536;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = malloc(buffer_size);
    buf->len = buf->base ? (ULONG)buffer_size : 0;
}

static void on_close(uv_handle_t *h)
{
    free(h); /* the client */
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    client *c = req->data;

    free(c->out.base);
    c->out.base = NULL;
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client *c = (client *)s;

    if (n > 0) {
        c->out = uv_buf_init(buf->base, (unsigned int)n);
        c->req.data = c;
        uv_read_stop(s);
        if (uv_write(&c->req, s, &c->out, 1, on_write) != 0) {
            free(buf->base);
            c->out.base = NULL;
            uv_close((uv_handle_t *)s, on_close);
        }
        return;
    }
    free(buf->base);
    if (n < 0) /* UV_EOF or an error */
        uv_close((uv_handle_t *)s, on_close);
}

static void on_connection(uv_stream_t *srv, int status)
{
    client *c;

    if (status < 0)
        return;
    if ((c = calloc(1, sizeof *c)) == NULL)
        return;
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_sigint(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    uv_stop(loop);
}

static int usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: uv-echo [--listen IP:PORT] [--threads 1] [--buffer-size BYTES]\n");
    return status;
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:7007";
    char host[64], name[80];
    const char *colon;
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    int threads = 1, len = sizeof ss, err;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return usage(0);
        if (i + 1 >= argc)
            return usage(2);
        if (strcmp(argv[i], "--listen") == 0)
            listen_at = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--buffer-size") == 0)
            buffer_size = (size_t)atol(argv[++i]);
        else
            return usage(2);
    }
    colon = strrchr(listen_at, ':');
    if (threads != 1 || buffer_size < 512 || !colon || (size_t)(colon - listen_at) >= sizeof host)
        return usage(2);
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = '\0';

    loop = uv_default_loop();
    uv_tcp_init(loop, &server);
    if ((err = uv_ip4_addr(host, atoi(colon + 1), sin)) != 0 ||
        (err = uv_tcp_bind(&server, (const struct sockaddr *)sin, 0)) != 0 ||
        (err = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection)) != 0) {
        fprintf(stderr, "uv-echo: %s: %s\n", listen_at, uv_strerror(err));
        return 1;
    }
    uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &len);
    uv_ip4_name(sin, name, sizeof name);
    printf("listening on %s:%d\n", name, ntohs(sin->sin_port));
    fflush(stdout);

    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_sigint, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
