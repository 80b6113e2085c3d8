/* The trace: one JSON object per line for every overlapped operation event.
 *
 * Fields: t (microseconds since the trace opened), thr (thread id), conn (connection id; 0 for a
 * pending accept), gen (generation of the connection's stream), op (accept, recv, send, connect,
 * disconnect, transmitfile, shutdown, close), phase (post, sync-ok, sync-error, pending,
 * complete), bytes, nt / nt_name (NTSTATUS), win32 / win32_name, wsa / wsa_name, kind (ok, eof,
 * peer-reset, aborted-locally, refused, other), peer (on accept and connect), and op-specific
 * extras (how on close, slot on accept). See docs/trace.md.
 *
 * Off by default; when off each event costs one predictable branch. Lines go to a bounded buffer
 * that a writer thread empties, so workers never block on the file; when the buffer is full,
 * events are dropped and counted (the last line of the trace says how many).
 * WSX_TRACE=path (or "-" for stdout) in the environment turns it on at the first wsx_port_create.
 */
#ifndef WSX_TRACE_H
#define WSX_TRACE_H

#include "wsx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Start tracing to `path` ("-" = stdout); replaces an open trace. Returns 0 or the Win32 error
 * of opening the file, mapped (WSAEACCES...). */
WSX_API int wsx_trace_open(const char *path);

/* Flush and stop. */
WSX_API void wsx_trace_close(void);

/* 1 while a trace is open (wsx_trace_open or WSX_TRACE), else 0. */
WSX_API int wsx_trace_enabled(void);

#ifdef __cplusplus
}
#endif

#endif
