/* Pooled fixed-size buffers. A pool hands out buffers of one size and keeps returned ones for
 * reuse, so steady-state I/O allocates nothing; `max` bounds how many exist at once. */
#ifndef WSX_BUF_H
#define WSX_BUF_H

#include "wsx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wsx_buf_pool wsx_buf_pool;

/* One buffer: data[off..len) is its content; cap is the pool's buffer size. */
typedef struct wsx_buf {
    struct wsx_buf *next; /* free for the owner's use (wsx's send queue uses it) */
    wsx_buf_pool *pool;
    char *data;
    DWORD cap;
    DWORD off;
    DWORD len;
} wsx_buf;

/* size: bytes per buffer (1..256 MiB); max: most buffers alive at once (0 = no limit).
 * Returns 0, WSAEINVAL or WSAENOBUFS. */
WSX_API int wsx_buf_pool_create(wsx_buf_pool **out, DWORD size, size_t max);

/* Frees the pool and its free buffers; buffers still out must be returned first
 * (WSAEINPROGRESS, and nothing is freed, if some are not). */
WSX_API int wsx_buf_pool_destroy(wsx_buf_pool *pool);

/* A buffer with off = len = 0, or NULL when the pool is at its max or memory is out. Thread-safe.
 */
WSX_API wsx_buf *wsx_buf_get(wsx_buf_pool *pool);

/* Give a buffer back to its pool. NULL is ignored. Thread-safe. */
WSX_API void wsx_buf_put(wsx_buf *buf);

/* Bytes per buffer of the pool (0 for NULL). */
WSX_API DWORD wsx_buf_pool_size(const wsx_buf_pool *pool);

/* Buffers handed out and not yet returned, and buffers allocated in all. */
WSX_API size_t wsx_buf_pool_outstanding(wsx_buf_pool *pool);
WSX_API size_t wsx_buf_pool_allocated(wsx_buf_pool *pool);

/* Free the idle buffers beyond keep_free; returns how many were freed. A port trims its own pool
 * on its own (every 250 ms, down to what it used at most since the last time, plus 16). */
WSX_API size_t wsx_buf_pool_trim(wsx_buf_pool *pool, size_t keep_free);

#ifdef __cplusplus
}
#endif

#endif
