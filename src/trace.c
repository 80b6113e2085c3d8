#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING (1u << 20) /* bytes of lines waiting for the writer */
#define LINE 640

volatile LONG wsx__trace_on;

static SRWLOCK lock = SRWLOCK_INIT;
static char *ring;
static size_t head, tail; /* ring[tail..head) holds lines, modulo RING */
static HANDLE out, writer, wake;
static volatile LONG stopping;
static LONG64 dropped;
static LARGE_INTEGER t0, freq;
static INIT_ONCE env_once = INIT_ONCE_STATIC_INIT;

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        DWORD w = 0;
        if (!WriteFile(out, p, (DWORD)(n > 65536 ? 65536 : n), &w, NULL) || w == 0)
            return;
        p += w;
        n -= w;
    }
}

/* Writes whole lines only, so that the program's own lines on the same handle (wsx-echo's stats
 * with --trace -) fall between them, never inside one; on anything but a disk file at most 4096
 * bytes a call: under Wine such a handle is a Unix pipe, which keeps a write of up to PIPE_BUF
 * (4096) together against other writers and may split a longer one. */
static void write_lines(const char *p, size_t n, size_t most)
{
    while (n > 0) {
        size_t k = n < most ? n : most;
        while (k > 0 && p[k - 1] != '\n')
            k--;
        if (k == 0) { /* one line longer than `most`: whole, in one call */
            const char *nl = memchr(p, '\n', n);
            k = nl ? (size_t)(nl - p) + 1 : n;
        }
        write_all(p, k);
        p += k;
        n -= k;
    }
}

/* Empties the ring; the only thread that touches the file. */
static DWORD WINAPI writer_main(void *arg)
{
    static char chunk[65536];
    size_t most = GetFileType(out) == FILE_TYPE_DISK ? sizeof chunk : 4096;

    (void)arg;
    int more = 0; /* the last chunk left lines in the ring: no wait (writers wake us only when
                     it was empty) */

    for (;;) {
        size_t n = 0, cut;
        int last = stopping != 0;

        WaitForSingleObject(wake, last || more ? 0 : 100);
        AcquireSRWLockExclusive(&lock);
        while (tail != head && n < sizeof chunk) {
            size_t run = head > tail ? head - tail : RING - tail;
            if (run > sizeof chunk - n)
                run = sizeof chunk - n;
            memcpy(chunk + n, ring + tail, run);
            n += run;
            tail = (tail + run) % RING;
        }
        /* The ring holds whole lines: a chunk cut inside one gives that line's start back. */
        for (cut = n; cut > 0 && chunk[cut - 1] != '\n'; cut--)
            ;
        if (cut > 0 && cut < n) {
            tail = (tail + RING - (n - cut)) % RING;
            n = cut;
        }
        more = tail != head;
        ReleaseSRWLockExclusive(&lock);
        if (n)
            write_lines(chunk, n, most);
        else if (last)
            return 0;
    }
}

void wsx__trace_line(const char *line, size_t n)
{
    size_t used, first;

    AcquireSRWLockExclusive(&lock);
    used = (head + RING - tail) % RING;
    if (ring == NULL || used + n >= RING - 1) {
        dropped++;
        ReleaseSRWLockExclusive(&lock);
        return;
    }
    first = RING - head < n ? RING - head : n;
    memcpy(ring + head, line, first);
    memcpy(ring, line + first, n - first);
    head = (head + n) % RING;
    ReleaseSRWLockExclusive(&lock);
    if (used == 0)
        SetEvent(wake);
}

static int put_code_names(char *p, size_t cap, const wsx_status *st)
{
    const char *nt = wsx_ntstatus_name(st->ntstatus);
    const char *w32 = wsx_win32_name(st->win32);
    /* Winsock names no code 0; NO_ERROR is the one its headers give success. */
    const char *wsa = st->wsa == 0 ? "NO_ERROR" : wsx_error_name(st->wsa);

    if (w32 == NULL && st->win32 == (DWORD)st->wsa)
        w32 = wsa; /* a WSA code is a Win32 code too (what GetLastError says) */
    if (st->ntstatus == 0 && st->wsa != 0) /* failed at once or by wsx's rule: no NTSTATUS */
        return snprintf(p, cap,
                        ",\"win32\":%lu,\"win32_name\":\"%s\",\"wsa\":%d,\"wsa_name\":\"%s\","
                        "\"kind\":\"%s\"",
                        (unsigned long)st->win32, w32 ? w32 : "", st->wsa, wsa ? wsa : "",
                        wsx_kind_name(st->kind));
    return snprintf(p, cap,
                    ",\"nt\":\"0x%08lX\",\"nt_name\":\"%s\",\"win32\":%lu,\"win32_name\":\"%s\","
                    "\"wsa\":%d,\"wsa_name\":\"%s\",\"kind\":\"%s\"",
                    (unsigned long)st->ntstatus, nt ? nt : "", (unsigned long)st->win32,
                    w32 ? w32 : "", st->wsa, wsa ? wsa : "", wsx_kind_name(st->kind));
}

void wsx__trace_event(unsigned long long conn, LONG gen, const char *op, const char *phase,
                      DWORD bytes, const wsx_status *st, const struct sockaddr *peer, int peer_len,
                      const char *extra)
{
    char line[LINE], addr[WSX_ADDRSTRLEN];
    LARGE_INTEGER now;
    long long d;
    int n, m;

    QueryPerformanceCounter(&now);
    /* Whole seconds apart: d * 1000000 overflows after ~10 days at a 10 MHz counter. */
    d = now.QuadPart - t0.QuadPart;
    n = snprintf(line, sizeof line,
                 "{\"t\":%lld,\"thr\":%lu,\"conn\":%llu,\"gen\":%ld,\"op\":\"%s\",\"phase\":\"%s\","
                 "\"bytes\":%lu",
                 d / freq.QuadPart * 1000000 + d % freq.QuadPart * 1000000 / freq.QuadPart,
                 GetCurrentThreadId(), conn, (long)gen, op, phase, (unsigned long)bytes);
    if (st && n > 0 && (size_t)n < sizeof line) {
        m = put_code_names(line + n, sizeof line - (size_t)n, st);
        n = m > 0 ? n + m : n;
    }
    if (peer && n > 0 && (size_t)n < sizeof line &&
        wsx_addr_format(peer, peer_len, addr, sizeof addr) == 0) {
        m = snprintf(line + n, sizeof line - (size_t)n, ",\"peer\":\"%s\"", addr);
        n = m > 0 ? n + m : n;
    }
    if (extra && n > 0 && (size_t)n < sizeof line) {
        m = snprintf(line + n, sizeof line - (size_t)n, ",%s", extra);
        n = m > 0 ? n + m : n;
    }
    if (n <= 0 || (size_t)n + 2 > sizeof line)
        return;
    line[n++] = '}';
    line[n++] = '\n';
    wsx__trace_line(line, (size_t)n);
}

static int out_owned; /* out was opened here (a path), not stdout's handle lent for "-" */

static void close_out(HANDLE h)
{
    if (out_owned)
        CloseHandle(h);
}

static HANDLE open_file(const char *path)
{
    return CreateFileA(path, GENERIC_WRITE, FILE_SHARE_READ, NULL, CREATE_ALWAYS,
                       FILE_ATTRIBUTE_NORMAL, NULL);
}

int wsx_trace_open(const char *path)
{
    HANDLE h;
    int err, owned;

    if (path == NULL)
        return WSAEINVAL;
    /* The new file first: a trace that cannot be opened leaves the open one running. */
    owned = strcmp(path, "-") != 0;
    h = owned ? open_file(path) : GetStdHandle(STD_OUTPUT_HANDLE);
    if (owned && h == INVALID_HANDLE_VALUE && GetLastError() == ERROR_SHARING_VIOLATION &&
        wsx_trace_enabled()) {
        wsx_trace_close(); /* the open trace's own file, most likely */
        h = open_file(path);
    }
    if (h == INVALID_HANDLE_VALUE || h == NULL)
        return wsx_error_from_win32(GetLastError());
    wsx_trace_close();
    out_owned = owned;
    AcquireSRWLockExclusive(&lock);
    if (ring == NULL)
        ring = malloc(RING);
    head = tail = 0;
    dropped = 0;
    ReleaseSRWLockExclusive(&lock);
    if (ring == NULL) {
        close_out(h);
        return WSAENOBUFS;
    }
    /* The event lives as long as the process: a thread still finishing a line when the trace
     * closes may set it, and a closed handle's value can name another object by then. */
    if (wake == NULL && (wake = CreateEventW(NULL, FALSE, FALSE, NULL)) == NULL) {
        err = wsx_error_from_win32(GetLastError());
        close_out(h);
        return err;
    }
    out = h;
    stopping = 0;
    QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&t0);
    writer = CreateThread(NULL, 0, writer_main, NULL, 0, NULL);
    if (writer == NULL) {
        err = wsx_error_from_win32(GetLastError());
        close_out(h);
        out = NULL;
        return err;
    }
    InterlockedExchange(&wsx__trace_on, 1);
    return 0;
}

/* Stop the writer, write what it left and the end line ourselves: queued behind the lines, the
 * end line was itself dropped when the ring was full, the one time its count matters. at_exit:
 * other threads may have been ended holding the lock (a DLL's atexit runs after that). */
static void trace_end(int at_exit)
{
    char line[96];
    int n, locked;

    if (!InterlockedExchange(&wsx__trace_on, 0))
        return;
    InterlockedExchange(&stopping, 1);
    SetEvent(wake);
    /* At exit the writer is gone (ExitProcess ended it) or ends soon; a DLL unloaded by
     * FreeLibrary runs this under the loader lock, which a thread needs to exit: do not wait for
     * ever, and leave the file to the writer if it is still there. */
    if (WaitForSingleObject(writer, at_exit ? 200 : INFINITE) != WAIT_OBJECT_0)
        return;
    CloseHandle(writer);
    locked = at_exit ? TryAcquireSRWLockExclusive(&lock) : (AcquireSRWLockExclusive(&lock), 1);
    if (locked) {
        if (head < tail) {
            write_all(ring + tail, RING - tail);
            tail = 0;
        }
        write_all(ring + tail, head - tail);
        tail = head;
        n = snprintf(line, sizeof line, "{\"op\":\"trace\",\"phase\":\"end\",\"dropped\":%lld}\n",
                     (long long)dropped);
        if (n > 0)
            write_all(line, (size_t)n);
        ReleaseSRWLockExclusive(&lock);
    }
    close_out(out);
    out = NULL;
}

void wsx_trace_close(void)
{
    trace_end(0);
}

static void trace_at_exit(void)
{
    trace_end(1);
}

int wsx_trace_enabled(void)
{
    return wsx__trace_on != 0;
}

static BOOL CALLBACK env_init(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    char path[MAX_PATH];
    DWORD n = GetEnvironmentVariableA("WSX_TRACE", path, sizeof path);

    (void)once, (void)param, (void)ctx;
    /* Nobody else knows to close it: at exit, write what is left and the end line. */
    if (n > 0 && n < sizeof path && !wsx__trace_on && wsx_trace_open(path) == 0)
        atexit(trace_at_exit);
    return TRUE;
}

void wsx__trace_from_env(void)
{
    InitOnceExecuteOnce(&env_once, env_init, NULL, NULL);
}

const char *wsx__trace_post_phase(int rc, int err, wsx_status *st)
{
    if (rc == 0)
        return "sync-ok";
    if (err == WSA_IO_PENDING)
        return "pending";
    *st = wsx_status_from_wsa(err);
    return "sync-error";
}
