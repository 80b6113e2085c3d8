/* The trace: one JSON object per line for every overlapped operation event.
 *
 * Fields: t (microseconds since the trace opened), thr (thread id), conn (connection id, from
 * its accept's completion or its connect's post to the end; 0 for a pending accept), gen
 * (generation of the connection's stream), op (accept, recv, send, connect, disconnect,
 * transmitfile, shutdown, close; trace on the end line), phase (sync-ok, sync-error, pending,
 * complete; park, timeout; end), bytes, nt / nt_name (NTSTATUS; absent when the code did not come
 * from the kernel), win32 / win32_name, wsa / wsa_name, kind (ok, eof, peer-reset, aborted-locally,
 * refused, other), peer (on accept and connect), and op-specific extras (how on close, slot on
 * accept...). See docs/trace.md.
 *
 * Off by default; when off each event costs one predictable branch. Lines go to a bounded buffer
 * that a writer thread empties, so workers never block on the file; when the buffer is full,
 * events are dropped and counted (the last line of the trace, written by wsx_trace_close, says
 * how many). WSX_TRACE=path (or "-" for stdout) in the environment turns it on at the first
 * wsx_port_create, and closes it at exit (atexit).
 */
#ifndef WSX_TRACE_H
#define WSX_TRACE_H

#include "wsx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Start tracing to `path` ("-" = stdout); replaces an open trace. Returns 0 or the error of
 * opening the file: its WSA code where there is one (WSAEACCES...), else the Win32 code as it is
 * (ERROR_PATH_NOT_FOUND...); a trace that was open then goes on. */
WSX_API int wsx_trace_open(const char *path);

/* Write what is queued and the end line, and stop. Call it before exit (or the end of the
 * trace is lost), unless the trace came from WSX_TRACE. */
WSX_API void wsx_trace_close(void);

/* 1 while a trace is open (wsx_trace_open or WSX_TRACE), else 0. */
WSX_API int wsx_trace_enabled(void);

#ifdef __cplusplus
}
#endif

#endif
