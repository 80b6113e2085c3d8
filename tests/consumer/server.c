/* A minimal wsx echo server: AcceptEx with initial data, a stream per connection that sends back
 * what it reads. Usage: server [ADDR:PORT] (default 127.0.0.1:7007; port 0 = any). Ctrl-C stops. */
#include <wsx/wsx.h>

#include <stdio.h>

static void on_data(wsx_stream *s, wsx_buf *b)
{
    wsx_stream_send_buf(s, b); /* echo: the buffer goes back out as it is */
}
static void on_close(wsx_stream *s, const wsx_status *why)
{
    (void)s;
    printf("closed: %s (NTSTATUS 0x%08lX, Win32 %lu, %s)\n", wsx_kind_name(why->kind),
           (unsigned long)why->ntstatus, (unsigned long)why->win32, wsx_strerror(why->wsa));
}
static const wsx_stream_callbacks cb = {on_data, NULL, on_close, NULL, NULL};

static void on_accept(wsx_listener *l, const wsx_accepted *a, void *port)
{
    wsx_stream_opts o = {.zero_byte_reads = 1, .skip_on_success = 1};
    wsx_stream *s;
    (void)l;
    wsx_stream_open(port, a->s, &o, &cb, NULL, a->data, a->len, &s); /* initial data first */
}

int main(int argc, char **argv)
{
    WSADATA w;
    wsx_port *port;
    wsx_listener *l;
    wsx_sockaddr addr;
    wsx_listener_opts lo = {.accepts = 16, .initial_data = 4096, .accept_timeout_s = 10};
    char text[WSX_ADDRSTRLEN];
    if (WSAStartup(MAKEWORD(2, 2), &w) != 0 || wsx_port_create(&port, NULL) != 0 ||
        wsx_port_start(port, 2) != 0 ||
        wsx_addr_parse(argc > 1 ? argv[1] : "127.0.0.1:7007", &addr))
        return 1;
    if (wsx_listener_open(port, &addr, &lo, on_accept, port, &l) != 0 ||
        wsx_listener_address(l, &addr) != 0 ||
        wsx_addr_format((struct sockaddr *)&addr.ss, addr.len, text, sizeof text) != 0)
        return 1;
    printf("listening on %s\n", text);
    fflush(stdout);
    Sleep(INFINITE);
    return 0;
}
