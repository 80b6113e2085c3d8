/* A minimal wsx client: connect with ConnectEx carrying the message (wsx_connect), read the echo,
 * compare it byte for byte. Usage: client HOST:PORT [BYTES]. Exit 0: the echo matched; 1: not. */
#include <wsx/wsx.h>

#include <stdio.h>
#include <stdlib.h>

static char *msg;
static size_t len, have;
static int ok;
static HANDLE done;

static void on_data(wsx_stream *s, wsx_buf *b)
{
    DWORD i;
    for (i = b->off; i < b->len; i++)
        if (have >= len || b->data[i] != msg[have++]) /* more than sent, or a wrong byte */
            break;
    if (i < b->len)
        wsx_stream_reset(s); /* ok stays 0 */
    else if (have == len) {
        ok = 1;
        wsx_stream_close(s); /* all of it came back: FIN, close */
    }
    wsx_buf_put(b);
}
static void on_close(wsx_stream *s, const wsx_status *why)
{
    (void)s;
    printf("client: closed (%s), %lu of %lu bytes echoed\n", wsx_kind_name(why->kind),
           (unsigned long)have, (unsigned long)len);
    SetEvent(done);
}
static const wsx_stream_callbacks cb = {on_data, NULL, on_close, NULL, NULL};

static void on_connected(SOCKET s, const wsx_status *st, DWORD sent, void *port)
{
    /* Reading pauses while more than max_queued waits to be sent: above the message, or the
     * echo of a long one would stall both ways. */
    wsx_stream_opts o = {
        .zero_byte_reads = 1, .skip_on_success = 1, .associated = 1, .max_queued = len};
    wsx_stream *stream;
    if (s == INVALID_SOCKET) {
        printf("client: connect failed: %s\n", wsx_strerror(st->wsa));
        SetEvent(done);
        return;
    }
    printf("client: connected, %lu bytes sent with the connect\n", (unsigned long)sent);
    if (wsx_stream_open(port, s, &o, &cb, NULL, NULL, 0, &stream) != 0)
        SetEvent(done); /* the socket is closed */
    else if (stream && sent < len && wsx_stream_send(stream, msg + sent, len - sent) != 0)
        wsx_stream_reset(stream);
}

int main(int argc, char **argv)
{
    WSADATA w;
    wsx_sockaddr addr;
    wsx_port *port;
    len = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;
    if (argc < 2 || wsx_addr_parse(argv[1], &addr) != 0 || len == 0 || !(msg = malloc(len)))
        return fprintf(stderr, "usage: client HOST:PORT [BYTES]\n"), 1;
    for (size_t i = 0; i < len; i++)
        msg[i] = (char)(i * 7 + i / 256); /* every byte value, no short period */
    done = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (WSAStartup(MAKEWORD(2, 2), &w) != 0 || wsx_port_create(&port, NULL) != 0 ||
        wsx_port_start(port, 2) != 0 ||
        wsx_connect(port, &addr, msg, (DWORD)len, on_connected, port))
        return fprintf(stderr, "client: cannot start\n"), 1;
    if (WaitForSingleObject(done, 10000) != WAIT_OBJECT_0)
        return printf("client: no complete echo within 10 s\n"), 1;
    wsx_port_stop(port);
    wsx_port_destroy(port);
    printf("client: %s\n", ok ? "echo OK" : "echo MISMATCH");
    return ok ? 0 : 1;
}
