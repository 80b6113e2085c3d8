#include "internal.h"

#include <assert.h>
#include <string.h>

void wsx_op_init(wsx_op *op, wsx_op_kind kind, wsx_op_fn fn, void *owner,
                 const volatile LONG *owner_gen)
{
    if (op == NULL)
        return;
    memset(op, 0, sizeof *op);
    op->kind = (unsigned char)kind;
    op->is_read = kind == WSX_OP_RECV;
    op->fn = fn;
    op->owner = owner;
    op->owner_gen = owner_gen;
}

int wsx_op_begin(wsx_op *op)
{
    if (op == NULL)
        return WSAEFAULT;
    if (InterlockedCompareExchange(&op->posted, 1, 0) != 0) {
        /* Posting an OVERLAPPED the kernel still owns would corrupt both operations. */
        assert(!"wsx_op posted twice");
        return WSAEALREADY;
    }
    memset(&op->ov, 0, sizeof op->ov);
    op->gen = op->owner_gen ? *op->owner_gen : 0;
    op->sync_wsa = 0;
    op->completed_inline = 0;
    op->inline_next = NULL;
    return 0;
}

void wsx_op_cancel_begin(wsx_op *op)
{
    if (op == NULL)
        return;
    InterlockedExchange(&op->posted, 0);
}

int wsx_op_is_posted(const wsx_op *op)
{
    return op != NULL && op->posted != 0;
}

const char *wsx_op_kind_name(wsx_op_kind kind)
{
    static const char *const names[WSX_OP_COUNT] = {
        "user", "accept", "recv", "send", "connect", "disconnect", "transmitfile",
    };
    return (int)kind >= 0 && kind < WSX_OP_COUNT ? names[kind] : "?";
}
