#!/usr/bin/python3
"""Run every echo server through every workload, interleaved, several times; print a table of
medians with ratios, and write bench/results/bench.json and bench/results/bench.png.

    /usr/bin/python3 bench/run.py [--quick] [--reps N] [--threads N] [--servers a,b] [--only w,x]

`make bench` builds everything first (bench/setup.sh) and then runs this. See bench/README.md.
"""
import argparse
import json
import os
import platform
import re
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("BENCH_BUILD", ROOT / "bench" / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
RESULTS = ROOT / "bench" / "results"
WINE_RUN = ROOT / "cmake" / "wine-run"
LOAD = BUILD / "load"
CACHE = Path(os.environ.get("WSX_CACHE", Path.home() / ".cache" / "wsx"))
WINEPREFIX = Path(os.environ.get("WSX_WINEPREFIX", CACHE / "wineprefix"))

# name, program, runs under Wine, role ("wsx", "peer" or "native")
SERVERS = [
    ("wsx", BUILD / "wsx-echo.exe", True, "wsx"),
    ("asio", BUILD / "asio-echo.exe", True, "peer"),
    ("libuv", BUILD / "uv-echo.exe", True, "peer"),
    ("native", BUILD / "epoll-echo", False, "native"),
]
SINGLE_THREADED = {"libuv"}  # one loop on one thread is how libuv is used (bench/peers/uv_echo.c)


class Workload:
    def __init__(self, key, title, mode, conns, size, quick_conns=None):
        self.key, self.title, self.mode = key, title, mode
        self.conns, self.size, self.quick_conns = conns, size, quick_conns or conns

    def configure(self, quick):
        """Quick runs hold fewer idle connections."""
        if quick:
            self.conns = self.quick_conns
        self.title = self.title.format(conns=self.conns)


WORKLOADS = [
    Workload("pp1", "pingpong 64 B x1", "pingpong", 1, 64),
    Workload("pp100", "pingpong 64 B x100", "pingpong", 100, 64),
    Workload("st1", "stream 64 KiB x1", "stream", 1, 65536),
    Workload("st100", "stream 64 KiB x100", "stream", 100, 65536),
    Workload("acc", "accept x8", "accept", 8, 64),
    Workload("idle", "idle x{conns}", "idle", 10000, 64, quick_conns=1000),
]

# Table rows: (workload key, metric label, unit, higher is better, value from a load result)
METRICS = [
    ("pp1", "msg/s", "msg/s", True, lambda r: r["per_s"]),
    ("pp1", "p99 us", "us", False, lambda r: r["rtt_us"]["p99"]),
    ("pp100", "msg/s", "msg/s", True, lambda r: r["per_s"]),
    ("pp100", "p99 us", "us", False, lambda r: r["rtt_us"]["p99"]),
    ("st1", "MB/s", "MB/s", True, lambda r: r["mb_per_s"]),
    ("st100", "MB/s", "MB/s", True, lambda r: r["mb_per_s"]),
    ("acc", "conn/s", "conn/s", True, lambda r: r["per_s"]),
    ("idle", "held", "conns", True, lambda r: r["held"]),
    ("idle", "server B/conn", "B", False, lambda r: r["rss_per_conn"]),
    ("idle", "wineserver B/conn*", "B", False,
     lambda r: r["aux_per_conn"] if r["aux_per_conn"] >= 0 else None),
]


def log(msg):
    print(msg, flush=True)


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft >= need or soft == resource.RLIM_INFINITY, soft


def server_options(name, program, wine):
    """The options a server's --help lists, so that wsx-echo gets only those it has."""
    cmd = ([str(WINE_RUN)] if wine else []) + [str(program), "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    opts = set(re.findall(r"--[a-z][a-z-]*", out.stdout))
    if "--listen" not in opts:
        sys.exit(f"bench: {name}: `{program.name} --help` does not list --listen:\n{out.stdout}{out.stderr}")
    return opts


def server_args(name, opts, workload, threads):
    args = ["--listen", "127.0.0.1:0"]
    if "--threads" in opts and name not in SINGLE_THREADED:
        args += ["--threads", str(threads)]
    if "--buffer-size" in opts:
        args += ["--buffer-size", "65536"]
    if workload.mode == "idle" and "--initial-data" in opts:
        args += ["--initial-data", "0"]  # idle connections are accepted on connect
    return args


def threads_used(name, opts, threads):
    args = server_args(name, opts, WORKLOADS[0], threads)
    return int(args[args.index("--threads") + 1]) if "--threads" in args else 1


def wineserver_pid():
    """The wineserver of our prefix: its working directory is server-<dev>-<inode> of the prefix."""
    try:
        st = WINEPREFIX.stat()
    except OSError:
        return None
    tag = f"server-{st.st_dev:x}-{st.st_ino:x}"
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.readlink(d / "exe").rsplit("/", 1)[-1].startswith("wineserver") and \
                    os.readlink(d / "cwd").endswith("/" + tag):
                return int(d.name)
        except OSError:
            continue
    return None


class Server:
    """One server process; stopped by PID: SIGINT, then SIGKILL if it does not exit in time."""

    def __init__(self, name, program, wine, args):
        self.name = name
        self.errlog = tempfile.TemporaryFile()
        cmd = ([str(WINE_RUN)] if wine else []) + [str(program)] + args
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.errlog)
        self.port = None
        self.out = b""
        deadline = time.monotonic() + 30
        while self.port is None and time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                self.out += chunk
                m = re.search(rb"listening on (\S+):(\d+)\r?\n", self.out)
                if m:
                    self.port = int(m.group(2))
        if self.port is None:
            self.stop()
            raise RuntimeError(f"{name} did not print 'listening on': {self.tail()}")

    def tail(self):
        self.errlog.seek(0)
        text = (self.out + self.errlog.read()).decode(errors="replace").replace("\r", "")
        return " | ".join(text.strip().splitlines()[-5:])

    def stop(self):
        """Return the exit status, or None if it had to be killed."""
        status = self.proc.poll()
        if status is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                status = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                status = None
        self.out += self.proc.stdout.read() or b""
        self.proc.stdout.close()
        return status


def load_cmd(workload, port, cfg):
    """The load generator's command line for a timed workload (idle adds its own options)."""
    cmd = [str(LOAD), workload.mode, "--addr", f"127.0.0.1:{port}", "--conns", str(workload.conns),
           "--size", str(workload.size)]
    if workload.mode != "idle":
        cmd += ["--duration", str(cfg.duration), "--warmup", str(cfg.warmup)]
    return cmd


def run_one(name, program, wine, opts, workload, cfg):
    """One measurement on a fresh server. Returns a dict with ok, errors and the load's fields."""
    try:
        srv = Server(name, program, wine, server_args(name, opts, workload, cfg.threads))
    except RuntimeError as e:
        return {"ok": False, "errors": [str(e)]}
    cmd = load_cmd(workload, srv.port, cfg)
    if workload.mode == "idle":
        cmd += ["--hold", str(cfg.hold), "--timeout", "120", "--server-pid", str(srv.proc.pid)]
        ws = wineserver_pid() if wine else None
        if ws:
            cmd += ["--aux-pid", str(ws)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if out.returncode not in (0, 1):
            raise RuntimeError(f"load exited {out.returncode}: {out.stderr.strip()}")
        res = json.loads(out.stdout)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        res = {"ok": False, "errors": [f"load generator: {e}"]}
    crashed = srv.proc.poll()
    status = srv.stop()
    if crashed is not None:
        res["ok"] = False
        res.setdefault("errors", []).append(f"{name} exited with status {crashed} during the run: {srv.tail()}")
    elif status is None:
        res["stop"] = "killed: did not exit within 10 s of SIGINT"
    if not res["ok"]:
        res["server_output"] = srv.tail()
    res["server_args"] = server_args(name, opts, workload, cfg.threads)
    return res


# A reply line of a wineserver started with -d1: one per request it served.
REPLY = re.compile(rb"^[0-9a-f]{4}: [a-z_]+\(\) = ", re.M)


def wine_env():
    return dict(os.environ, WINEPREFIX=str(WINEPREFIX), WINEDEBUG="-all")


def stop_wineserver():
    """Stop our prefix's wineserver (no server of ours runs at this point) and wait for it."""
    subprocess.run(["wineserver", "-k"], env=wine_env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    for _ in range(100):
        if wineserver_pid() is None:
            return
        time.sleep(0.1)


def count_one(name, program, opts, workload, cfg, logpath):
    """One ping-pong run against the logging wineserver: requests it served per echo, counted
    between the load generator's marks of its measured window."""
    try:
        srv = Server(name, program, True, server_args(name, opts, workload, cfg.threads))
    except RuntimeError as e:
        return None, str(e)
    try:
        rfd, wfd = os.pipe()
        load = subprocess.Popen(load_cmd(workload, srv.port, cfg) + ["--mark-fd", str(wfd)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(wfd,))
        os.close(wfd)
        at = {}
        with os.fdopen(rfd, "rb") as marks:
            for line in marks:  # ends when the load generator exits (it has its own timeout)
                at[line.strip().decode()] = logpath.stat().st_size
        out, err = load.communicate(timeout=180)
    finally:
        srv.stop()
    try:
        res = json.loads(out)
    except ValueError:
        return None, f"load generator: {err.decode(errors='replace').strip()}"
    if not res["ok"] or "measure" not in at or "drain" not in at or not res["total"]:
        return None, "; ".join(res.get("errors", [])[:3]) or "no measured window"
    with open(logpath, "rb") as f:
        f.seek(at["measure"])
        requests = len(REPLY.findall(f.read(at["drain"] - at["measure"])))
    return requests / res["total"], None


def request_counts(servers, opts, workloads, cfg):
    """Wineserver requests per echo, the cost that bounds every server under Wine: one more
    ping-pong run of each Wine server against a wineserver of our prefix that logs every request
    (-d1; slower, so only the counts are kept). Returns {workload key: {server: value or None}}."""
    todo = [(w, s) for w in workloads if w.mode == "pingpong" for s in servers
            if SERVERS_BY_NAME[s][2]]
    if not todo:
        return {}
    counts = {}
    stop_wineserver()
    with tempfile.TemporaryDirectory(prefix="wsx-bench-") as d:
        logpath = Path(d) / "wineserver.log"
        with open(logpath, "ab") as logf:
            ws = subprocess.Popen(["wineserver", "-f", "-p", "-d1"], env=wine_env(),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=logf)
        try:
            # Wine's own services start with the first program: before the counting, not in it.
            subprocess.run([str(WINE_RUN), "cmd.exe", "/c", "exit"], cwd=ROOT,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
            for w, s in todo:
                name, program, _, _ = SERVERS_BY_NAME[s]
                v, why = count_one(name, program, opts[s], w, cfg, logpath)
                counts.setdefault(w.key, {})[s] = v
                log(f"[requests] {w.title:<20} {s:<7} "
                    + (f"{v:.2f} wineserver requests per echo" if v is not None else f"FAILED: {why}"))
                with open(logpath, "r+b") as f:
                    f.truncate(0)  # the log only grows; each run reads its own window
        finally:
            stop_wineserver()
            try:
                ws.wait(timeout=10)
            except subprocess.TimeoutExpired:
                ws.kill()
                ws.wait()
    return counts


def request_rows(rows, counts):
    """Add a "wineserver req/echo" row (lower is better) after each ping-pong workload's rows."""
    for key, per in counts.items():
        w = next(w for w in WORKLOADS if w.key == key)
        clean = {s: v for s, v in per.items() if v is not None}
        peers = [clean[s] for s in clean if SERVERS_BY_NAME[s][3] == "peer"]
        row = {"workload": w.title, "metric": "wineserver req/echo", "unit": "requests",
               "higher_is_better": False, "median": dict(per),
               "values": {s: [v] for s, v in clean.items()},
               "failed": {s: int(v is None) for s, v in per.items()},
               "best_peer": min(peers) if peers else None, "wine_vs_native": None}
        row["wsx_vs_best_peer"] = clean["wsx"] / row["best_peer"] if "wsx" in clean and peers else None
        last = max((i for i, r in enumerate(rows) if r["workload"] == w.title), default=len(rows) - 1)
        rows.insert(last + 1, row)


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def summarize(runs, servers, reps):
    rows = []
    for key, label, unit, higher, get in METRICS:
        w = next(w for w in WORKLOADS if w.key == key)
        row = {"workload": w.title, "metric": label, "unit": unit, "higher_is_better": higher,
               "median": {}, "values": {}, "failed": {}}
        for s in servers:
            rs = [r for r in runs if r["server"] == s and r["workload"] == key]
            if not rs:
                continue
            vals = [get(r) for r in rs if r["ok"]]
            vals = [v for v in vals if v is not None]
            row["values"][s] = vals
            row["failed"][s] = sum(1 for r in rs if not r["ok"])
            row["median"][s] = statistics.median(vals) if vals else None
        if not row["median"]:
            continue  # workload not run (--only)
        clean = {s: v for s, v in row["median"].items() if v is not None and row["failed"][s] == 0}
        best = max if higher else min
        peers = [clean[s] for s, _, _, role in SERVERS_BY_NAME.values() if role == "peer" and s in clean]
        wine_vals = [clean[s] for s, _, wine, _ in SERVERS_BY_NAME.values() if wine and s in clean]
        if label.startswith("wineserver"):
            peers = wine_vals = []  # Wine's own cost per socket, not a comparison
        row["best_peer"] = best(peers) if peers else None
        row["wsx_vs_best_peer"] = (clean["wsx"] / row["best_peer"]
                                   if "wsx" in clean and row["best_peer"] else None)
        row["wine_vs_native"] = (best(wine_vals) / clean["native"]
                                 if wine_vals and clean.get("native") else None)
        rows.append(row)
    return rows


def print_table(rows, servers, threads):
    head = ["workload", "metric"] + [f"{s}({threads[s]}t)" for s in servers] + ["wsx/peer", "wine/native"]
    body = []
    last = None
    for r in rows:
        cells = [r["workload"] if r["workload"] != last else "", r["metric"] + (" ^" if r["higher_is_better"] else " v")]
        last = r["workload"]
        for s in servers:
            v, nf = r["median"].get(s), r["failed"].get(s, 0)
            if s not in r["median"]:
                cells.append("")
            elif v is None:
                cells.append("FAIL" if nf else "-")
            else:
                cells.append(fmt(v) + (f" !{nf}" if nf else ""))
        for k in ("wsx_vs_best_peer", "wine_vs_native"):
            cells.append(f"{r[k]:.2f}" if r[k] is not None else "-")
        body.append(cells)
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    log(line(head))
    log("  ".join("-" * w for w in widths))
    for cells in body:
        log(line(cells))


def chart(rows, servers, path, meta):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"wsx": "#d62728", "asio": "#1f77b4", "libuv": "#2ca02c", "native": "#7f7f7f"}
    n = len(rows)
    cols = 4
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows))
    axes = axes.flatten()
    for ax, r in zip(axes, rows):
        # Bars for the servers under Wine; the native limit is far above them, so it is a number.
        names = [s for s in servers if s in r["median"] and s != "native"]
        meds = [r["median"][s] or 0 for s in names]
        ax.bar(names, meds, color=[colors.get(s, "#999") for s in names])
        for i, s in enumerate(names):
            ax.plot([i] * len(r["values"][s]), r["values"][s], "k.", markersize=4)
            if r["failed"].get(s):
                ax.text(i, 0, f"{r['failed'][s]} failed", ha="center", va="bottom", fontsize=8,
                        rotation=90, bbox={"facecolor": "white", "edgecolor": "red", "pad": 2})
        notes = []
        if r["wsx_vs_best_peer"] is not None:
            notes.append(f"wsx/peer {r['wsx_vs_best_peer']:.2f}")
        if r["median"].get("native") is not None:
            notes.append(f"native {fmt(r['median']['native'])}")
        ax.set_title(f"{r['workload']}: {r['metric']} ({'higher' if r['higher_is_better'] else 'lower'} "
                     f"is better)\n{', '.join(notes)}", fontsize=9)
        ax.set_ylabel(r["unit"], fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes[n:]:
        ax.axis("off")
    fig.suptitle(f"wsx bench {meta['date']} ({meta['commit']}), medians of {meta['reps']} runs "
                 f"(dots: each run), {meta['threads']} threads where supported", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def git_commit():
    """What wsx-echo was built from (bench/setup.sh wrote it), else the tree's commit."""
    rev = BUILD / "wsx-echo.rev"
    if rev.exists():
        return rev.read_text().strip()
    try:
        c = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "include", "server"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return c + ("+changes" if dirty else "")
    except OSError:
        return "?"


SERVERS_BY_NAME = {s[0]: s for s in SERVERS}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 run, 1 s per workload, 1,000 idle conns")
    ap.add_argument("--reps", type=int, help="runs of everything (default 3; quick 1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for servers that take --threads (default: the cores)")
    ap.add_argument("--servers", default=",".join(SERVERS_BY_NAME), help="comma-separated subset")
    ap.add_argument("--only", default=",".join(w.key for w in WORKLOADS),
                    help="workloads: " + ", ".join(f"{w.key} ({w.title})" for w in WORKLOADS))
    ap.add_argument("--no-requests", action="store_true",
                    help="skip counting wineserver requests per echo (a run per Wine server and "
                         "ping-pong workload against a logging wineserver, after the table's runs)")
    cfg = ap.parse_args()
    cfg.reps = cfg.reps or (1 if cfg.quick else 3)
    cfg.duration, cfg.warmup, cfg.hold = (1.0, 0.3, 0.5) if cfg.quick else (2.0, 0.5, 1.0)
    servers = [s for s in cfg.servers.split(",") if s]
    workloads = [w for w in WORKLOADS if w.key in cfg.only.split(",")]
    for s in servers:
        if s not in SERVERS_BY_NAME:
            sys.exit(f"bench: unknown server {s}")
    if not LOAD.exists():
        sys.exit(f"bench: {LOAD} is missing: run `make bench` (or bench/setup.sh) first")

    for w in WORKLOADS:
        w.configure(cfg.quick)
    need = max(w.conns for w in workloads) + 200
    ok, limit = raise_fd_limit(need)
    if not ok:
        sys.exit(f"bench: the open-file limit is {limit}, below the {need} the idle workload needs "
                 "(raise the hard limit: ulimit -Hn)")
    if any(SERVERS_BY_NAME[s][2] for s in servers):
        subprocess.run([str(WINE_RUN), "--start-server"], cwd=ROOT, check=True)
    opts = {s: server_options(s, SERVERS_BY_NAME[s][1], SERVERS_BY_NAME[s][2]) for s in servers}

    t0 = time.monotonic()
    total = cfg.reps * len(workloads) * len(servers)
    log(f"bench: {total} runs: {len(servers)} servers x {len(workloads)} workloads x {cfg.reps}, "
        f"{cfg.duration:g} s each after warm-up; servers use {cfg.threads} threads where they can")
    runs = []
    for rep in range(cfg.reps):
        for wi, w in enumerate(workloads):
            # Interleaved, and the order of the servers turns with each workload and repetition.
            k = (rep + wi) % len(servers)
            for s in servers[k:] + servers[:k]:
                name, program, wine, _ = SERVERS_BY_NAME[s]
                res = run_one(name, program, wine, opts[s], w, cfg)
                res.update({"server": s, "workload": w.key, "rep": rep + 1})
                runs.append(res)
                el = time.monotonic() - t0
                if not res["ok"]:
                    what = "FAILED: " + "; ".join(res.get("errors", [])[:3])
                elif w.mode == "idle":
                    what = (f"{res['held']} held, {fmt(res['rss_per_conn'])} B/conn"
                            + (f", wineserver {fmt(res['aux_per_conn'])} B/conn" if res["aux_per_conn"] >= 0 else ""))
                elif w.mode == "stream":
                    what = f"{fmt(res['mb_per_s'])} MB/s"
                else:
                    what = (f"{fmt(res['per_s'])} {'msg' if w.mode == 'pingpong' else 'conn'}/s, "
                            f"p50 {fmt(res['rtt_us']['p50'])} us, p99 {fmt(res['rtt_us']['p99'])} us")
                log(f"[{len(runs):3}/{total} {int(el) // 60:2}m{int(el) % 60:02}s] rep {rep + 1} "
                    f"{w.title:<20} {s:<7} {what}")

    counts = {} if cfg.no_requests else request_counts(servers, opts, workloads, cfg)
    rows = summarize(runs, servers, cfg.reps)
    request_rows(rows, counts)
    ws_growth = [r["aux_per_conn"] for r in runs if r["ok"] and r.get("aux_per_conn", -1) >= 0]
    elapsed = time.monotonic() - t0
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "commit": git_commit(), "quick": cfg.quick,
        "reps": cfg.reps, "threads": cfg.threads, "duration_s": cfg.duration, "warmup_s": cfg.warmup,
        "cores": os.cpu_count(), "kernel": platform.release(), "elapsed_s": round(elapsed, 1),
        "server_options": {s: sorted(opts[s]) for s in servers},
        "threads_used": {s: threads_used(s, opts[s], cfg.threads) for s in servers},
        "wine": subprocess.run(["wine", "--version"], capture_output=True, text=True).stdout.strip()
        if any(SERVERS_BY_NAME[s][2] for s in servers) else None,
    }
    log("")
    log(f"wsx bench, {meta['date']}, {meta['commit']}: medians of {cfg.reps} run(s); "
        "^ higher is better, v lower is better; !N: N runs failed (not in the median)")
    print_table(rows, servers, meta["threads_used"])
    log("(Nt): threads the server ran. wsx/peer: wsx / best of asio and libuv (above 1 is better "
        "for ^, below 1 for v). wine/native: best server under Wine / native epoll (what Wine costs).")
    if counts:
        log("wineserver req/echo: requests the wineserver served per echo in one more run of each "
            "Wine server, against a wineserver that logs them (-d1). A socket call on an accepted "
            "socket that completes at once is 3 under Wine 8.0, so 6 is any server's floor; while "
            "the wineserver is the bottleneck, best peer / wsx here bounds the msg/s ratio.")
    if any(w.key == "idle" for w in workloads):
        log("*wineserver: growth of its RSS while the connections were held; it keeps its heap, so "
        "after an earlier run has grown it this reads near 0 (largest seen: "
        f"{fmt(max(ws_growth, default=None))} B/conn).")
    failed = [r for r in runs if not r["ok"]]
    if failed:
        log(f"\n{len(failed)} of {len(runs)} runs failed:")
        for r in failed:
            log(f"  rep {r['rep']} {r['workload']} {r['server']}: " + "; ".join(r.get("errors", [])[:4]))
    killed = [r for r in runs if r.get("stop")]
    for r in killed:
        log(f"  note: rep {r['rep']} {r['workload']} {r['server']}: {r['stop']}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "bench.json", "w") as f:
        json.dump({"meta": meta, "table": rows, "runs": runs, "requests_per_echo": counts}, f, indent=1)
    try:
        chart(rows, servers, RESULTS / "bench.png", meta)
        log(f"\nwrote {RESULTS / 'bench.json'} and {RESULTS / 'bench.png'} ({elapsed:.0f} s of runs)")
    except ImportError as e:
        log(f"\nwrote {RESULTS / 'bench.json'}; no chart: {e} (apt-get install python3-matplotlib)")
    # A run of wsx that lost or corrupted data, or starved a connection, is not a result: fail.
    wsx_failed = sum(1 for r in failed if r["server"] == "wsx")
    if wsx_failed:
        log(f"bench: {wsx_failed} run(s) of wsx-echo failed (listed above): exit status 1")
    return 1 if wsx_failed else 0


if __name__ == "__main__":
    sys.exit(main())
