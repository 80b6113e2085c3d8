/* Overlapped operation contexts.
 *
 * Windows rule: the OVERLAPPED of an operation belongs to the kernel from the call that starts it
 * until its completion is dequeued (or, with skip-on-success, until the call returned success).
 * It must not be freed, reused or posted again before then. A wsx_op puts the OVERLAPPED first,
 * so the OVERLAPPED * that GetQueuedCompletionStatusEx returns converts back with
 * CONTAINING_RECORD, and carries what the completion needs: its handler, owner and a
 * generation stamp that lets a completion for an owner that has since been reused be dropped.
 */
#ifndef WSX_OP_H
#define WSX_OP_H

#include "wsx/common.h"
#include "wsx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wsx_op_kind {
    WSX_OP_USER,
    WSX_OP_ACCEPT,
    WSX_OP_RECV,
    WSX_OP_SEND,
    WSX_OP_CONNECT,
    WSX_OP_DISCONNECT,
    WSX_OP_TRANSMITFILE,
    WSX_OP_COUNT
} wsx_op_kind;

typedef struct wsx_op wsx_op;
struct wsx_port;

/* Runs on a port thread with the classified completion of `op`. */
typedef void (*wsx_op_fn)(wsx_op *op, const wsx_status *st);

struct wsx_op {
    OVERLAPPED ov; /* first: CONTAINING_RECORD(ov, wsx_op, ov) */
    wsx_op_fn fn;
    void *owner;
    void *user;
    struct wsx_port *port;
    const volatile LONG *owner_gen; /* NULL: the owner is never reused */
    unsigned *streak;               /* owner's run of inline completions; NULL: no cap */
    wsx_op *inline_next;
    /* The 4-byte fields together: no padding holes (every idle stream holds one wsx_op). */
    LONG gen;             /* *owner_gen when the op was posted */
    volatile LONG posted; /* 1 while the kernel (or the port) owns ov */
    int sync_wsa;         /* a failure reported by the call itself, not a packet */
    unsigned char kind;
    unsigned char is_read;          /* a 0-byte success means EOF */
    unsigned char completed_inline; /* this completion did not come through the port */
    unsigned char fair; /* a small read that, done at once, may wait its turn (port.c SMALL_READ) */
};

/* Prepare an op once; owner_gen may be NULL. */
WSX_API void wsx_op_init(wsx_op *op, wsx_op_kind kind, wsx_op_fn fn, void *owner,
                         const volatile LONG *owner_gen);

/* Call right before posting: zeroes the OVERLAPPED, stamps the owner's generation and marks the
 * op posted. Returns WSAEALREADY if it is still posted: a double post, caught instead of
 * corrupting the kernel's OVERLAPPED (a debug build also asserts). */
WSX_API int wsx_op_begin(wsx_op *op);

/* Undo wsx_op_begin when the post failed at once and no completion will come. */
WSX_API void wsx_op_cancel_begin(wsx_op *op);

/* 1 while the kernel (or the port) owns the op's OVERLAPPED: between wsx_op_begin and its
 * completion. 0 for NULL. */
WSX_API int wsx_op_is_posted(const wsx_op *op);

/* "user", "accept", "recv", "send", "connect", "disconnect", "transmitfile". */
WSX_API const char *wsx_op_kind_name(wsx_op_kind kind);

#ifdef __cplusplus
}
#endif

#endif
