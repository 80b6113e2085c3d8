#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct connect_op {
    wsx_op op;
    SOCKET s;
    wsx_connect_fn fn;
    void *user;
    char *data; /* must live until the completion: the kernel reads it */
    wsx_sockaddr to;
} connect_op;

static void on_connect(wsx_op *op, const wsx_status *st)
{
    connect_op *c = op->owner;
    SOCKET s = c->s;
    wsx_port *port;

    if (WSX_TRACING())
        wsx__trace_event(0, 0, "connect", "complete", st->bytes, st,
                         (const struct sockaddr *)&c->to.ss, c->to.len, NULL);
    if (st->wsa == 0 && setsockopt(s, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) != 0) {
        wsx_status err = wsx_status_from_wsa(WSAGetLastError());
        closesocket(s);
        c->fn(INVALID_SOCKET, &err, 0, c->user);
    } else if (st->wsa != 0) {
        closesocket(s);
        c->fn(INVALID_SOCKET, st, 0, c->user);
    } else {
        c->fn(s, st, st->bytes, c->user);
    }
    port = c->op.port;
    free(c);
    InterlockedDecrement(&port->live_others); /* last: wsx_port_destroy may free it from here */
}

int wsx_connect(wsx_port *port, const wsx_sockaddr *to, const void *data, DWORD len,
                wsx_connect_fn fn, void *user)
{
    connect_op *c;
    wsx_sockaddr any;
    const wsx_ext *ext;
    DWORD sent = 0;
    int err;

    if (port == NULL || to == NULL || fn == NULL || (data == NULL && len > 0) ||
        wsx_addr_family_len(to->ss.ss_family) == 0 ||
        to->len < wsx_addr_family_len(to->ss.ss_family))
        return WSAEINVAL;
    c = malloc(sizeof *c + len);
    if (c == NULL)
        return WSAENOBUFS;
    c->data = (char *)(c + 1);
    if (len)
        memcpy(c->data, data, len);
    c->fn = fn;
    c->user = user;
    c->to = *to;
    c->s = WSASocketW(to->ss.ss_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (c->s == INVALID_SOCKET) {
        err = WSAGetLastError();
        free(c);
        return err;
    }
    /* ConnectEx refuses an unbound socket: bind to the family's wildcard, any port. */
    memset(&any, 0, sizeof any);
    any.ss.ss_family = to->ss.ss_family;
    any.len = wsx_addr_family_len(to->ss.ss_family);
    err = bind(c->s, (struct sockaddr *)&any.ss, any.len) != 0 ? WSAGetLastError() : 0;
    if (err == 0)
        err = wsx_ext_get(c->s, &ext);
    if (err == 0)
        err = wsx_ext_require(ext, WSX_EXT_BIT(WSX_EXT_CONNECTEX), NULL);
    if (err == 0)
        err = wsx_port_associate(port, c->s, 0, NULL);
    if (err == 0) {
        wsx_op_init(&c->op, WSX_OP_CONNECT, on_connect, c, NULL);
        wsx_op_begin(&c->op);
        c->op.port = port;
        InterlockedIncrement(&port->live_others);
        /* Not in skip-on-success mode: success or pending, a packet comes. */
        err = ext->ConnectEx(c->s, (const struct sockaddr *)&to->ss, to->len, len ? c->data : NULL,
                             len, &sent, &c->op.ov)
                  ? 0
                  : WSAGetLastError();
        if (WSX_TRACING()) {
            wsx_status st;
            const char *phase = wsx__trace_post_phase(err ? -1 : 0, err, &st);
            wsx__trace_event(0, 0, "connect", phase, sent,
                             err && err != WSA_IO_PENDING ? &st : NULL,
                             (const struct sockaddr *)&to->ss, to->len, NULL);
        }
        if (err == WSA_IO_PENDING)
            err = 0;
        else if (err)
            InterlockedDecrement(&port->live_others); /* no completion will come */
    }
    if (err) {
        closesocket(c->s);
        free(c);
    }
    return err;
}
