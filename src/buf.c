#include "internal.h"

#include <stdlib.h>

struct wsx_buf_pool {
    SRWLOCK lock;
    wsx_buf *free;
    DWORD size;
    size_t max;
    size_t allocated;
    size_t outstanding;
    size_t peak_out; /* most buffers out at once since the last wsx__buf_pool_sweep */
};

/* Buffers of BIG bytes or more get their data from VirtualAlloc: a trimmed pool then really gives
 * the memory back (Wine's heap keeps freed 64 KiB blocks resident: trimming 500 of them with free()
 * lowered the RSS by 1 of 32 MB), and the kernel locks page-aligned buffers for I/O cheaply. */
#define BIG (16u << 10)

static wsx_buf *buf_alloc(wsx_buf_pool *p)
{
    wsx_buf *b;

    if (p->size < BIG) {
        b = malloc(sizeof *b + p->size); /* header and data in one block, data after the header */
        if (b)
            b->data = (char *)(b + 1);
    } else {
        b = malloc(sizeof *b);
        if (b && (b->data = VirtualAlloc(NULL, p->size, MEM_RESERVE | MEM_COMMIT,
                                         PAGE_READWRITE)) == NULL) {
            free(b);
            b = NULL;
        }
    }
    if (b) {
        b->pool = p;
        b->cap = p->size;
    }
    return b;
}

static void buf_free(wsx_buf *b)
{
    if (b->data != (char *)(b + 1))
        VirtualFree(b->data, 0, MEM_RELEASE);
    free(b);
}

int wsx_buf_pool_create(wsx_buf_pool **out, DWORD size, size_t max)
{
    wsx_buf_pool *p;

    if (out == NULL)
        return WSAEINVAL;
    *out = NULL;
    if (size == 0 || size > (256u << 20))
        return WSAEINVAL;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return WSAENOBUFS;
    InitializeSRWLock(&p->lock);
    p->size = size;
    p->max = max;
    *out = p;
    return 0;
}

int wsx_buf_pool_destroy(wsx_buf_pool *p)
{
    if (p == NULL)
        return 0;
    AcquireSRWLockExclusive(&p->lock);
    if (p->outstanding != 0) {
        ReleaseSRWLockExclusive(&p->lock);
        return WSAEINPROGRESS;
    }
    while (p->free) {
        wsx_buf *b = p->free;
        p->free = b->next;
        buf_free(b);
    }
    ReleaseSRWLockExclusive(&p->lock);
    free(p);
    return 0;
}

wsx_buf *wsx_buf_get(wsx_buf_pool *p)
{
    wsx_buf *b;

    if (p == NULL)
        return NULL;
    AcquireSRWLockExclusive(&p->lock);
    b = p->free;
    if (b) {
        p->free = b->next;
    } else if (p->max == 0 || p->allocated < p->max) {
        b = buf_alloc(p);
        if (b)
            p->allocated++;
    }
    if (b) {
        if (++p->outstanding > p->peak_out)
            p->peak_out = p->outstanding;
        b->next = NULL;
        b->off = 0;
        b->len = 0;
    }
    ReleaseSRWLockExclusive(&p->lock);
    return b;
}

void wsx_buf_put(wsx_buf *b)
{
    wsx_buf_pool *p;

    if (b == NULL)
        return;
    p = b->pool;
    AcquireSRWLockExclusive(&p->lock);
    b->next = p->free;
    p->free = b;
    p->outstanding--;
    ReleaseSRWLockExclusive(&p->lock);
}

DWORD wsx_buf_pool_size(const wsx_buf_pool *p)
{
    return p ? p->size : 0;
}

size_t wsx_buf_pool_outstanding(wsx_buf_pool *p)
{
    size_t n;

    if (p == NULL)
        return 0;
    AcquireSRWLockShared(&p->lock);
    n = p->outstanding;
    ReleaseSRWLockShared(&p->lock);
    return n;
}

size_t wsx_buf_pool_trim(wsx_buf_pool *p, size_t keep_free)
{
    wsx_buf *extra = NULL;
    size_t freed = 0;

    if (p == NULL)
        return 0;
    AcquireSRWLockExclusive(&p->lock);
    while (p->free && p->allocated - p->outstanding > keep_free) {
        wsx_buf *b = p->free;
        p->free = b->next;
        b->next = extra;
        extra = b;
        p->allocated--;
    }
    ReleaseSRWLockExclusive(&p->lock);
    while (extra) {
        wsx_buf *b = extra;
        extra = b->next;
        buf_free(b);
        freed++;
    }
    return freed;
}

/* Keep what the last period needed at its peak, plus a margin: a steady load does not churn, and
 * after a burst (many connections hot, then parked) the memory goes back within two periods. */
size_t wsx__buf_pool_sweep(wsx_buf_pool *p)
{
    size_t keep;

    AcquireSRWLockExclusive(&p->lock);
    keep = p->peak_out - p->outstanding + 16;
    p->peak_out = p->outstanding;
    ReleaseSRWLockExclusive(&p->lock);
    return wsx_buf_pool_trim(p, keep);
}

size_t wsx_buf_pool_allocated(wsx_buf_pool *p)
{
    size_t n;

    if (p == NULL)
        return 0;
    AcquireSRWLockShared(&p->lock);
    n = p->allocated;
    ReleaseSRWLockShared(&p->lock);
    return n;
}
