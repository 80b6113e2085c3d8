#include "internal.h"

#include <stdlib.h>

struct wsx_buf_pool {
    SRWLOCK lock;
    wsx_buf *free;
    DWORD size;
    size_t max;
    size_t allocated;
    size_t outstanding;
};

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
        free(b);
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
        /* Header and data in one allocation; data follows the header. */
        b = malloc(sizeof *b + p->size);
        if (b) {
            b->pool = p;
            b->data = (char *)(b + 1);
            b->cap = p->size;
            p->allocated++;
        }
    }
    if (b) {
        p->outstanding++;
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
