# SPDX-License-Identifier: MIT
"""What bench/run reads from the machine: CPU time and memory of processes from
/proc, a memory cgroup (v1 or v2), tgring's /metrics, and a sampler thread that
records resident memory and response counts every 0.25 s."""

import os
import re
import threading
import time
import urllib.request

CLK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()  # fields from `state` on


def cpu_s(pid, reaped=False):
    """utime + stime of pid in seconds (plus its reaped children's when reaped)."""
    try:
        f = _stat_fields(pid)
    except (OSError, ValueError):
        return 0.0
    t = int(f[11]) + int(f[12])
    if reaped:
        t += int(f[13]) + int(f[14])
    return t / CLK


def children(pid):
    """The live processes whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if int(_stat_fields(d)[1]) == pid:
                    out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def tree(pid):
    """pid and all its live descendants."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(children(p))
    return seen


def tree_cpu_s(pid):
    """CPU seconds of a process tree: the live processes and the children the
    root has reaped (a PostgreSQL postmaster reaps its backends)."""
    pids = tree(pid)
    return cpu_s(pid, reaped=True) + sum(cpu_s(p, reaped=True) for p in pids[1:])


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == field:
                    return int(v.split()[0])
    except OSError:
        pass
    return None


def metrics(port):
    """tgring's /metrics as {name_with_labels: value}; {} when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return parse_metrics(text)


def parse_metrics(text):
    """Prometheus text as {name_with_labels: value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def steal_s():
    """CPU time stolen from this (virtual) machine by its host, all CPUs, in seconds: the
    eighth field of /proc/stat's cpu line; 0.0 where the kernel does not count it."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0
    except (OSError, ValueError):
        return 0.0


def wake_probe(seconds=1.0, nap=0.001):
    """How late a sleep of `nap` s wakes on this machine (an idle core may take its time to
    wake, and a host may run another guest meanwhile): {p50_us, p99_us, max_us, n} of the
    overshoot over `seconds` of back-to-back sleeps, Python's own few µs included."""
    over = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic_ns()
        time.sleep(nap)
        over.append((time.monotonic_ns() - t) / 1e3 - nap * 1e6)
    over.sort()
    pick = lambda q: round(over[min(len(over) - 1, int(q * len(over)))], 1)
    return {"p50_us": pick(0.5), "p99_us": pick(0.99), "max_us": round(over[-1], 1),
            "n": len(over), "nap_ms": nap * 1e3}


def hist_delta(m0, m1, name):
    """[(le, count)] of histogram `name` between two metrics() snapshots, cumulative as
    Prometheus has it (le '+Inf' last); [] when the histogram is missing."""
    out = []
    for k, v in m1.items():
        g = re.fullmatch(re.escape(name) + r'_bucket\{le="([^"]+)"\}', k)
        if g:
            out.append((g.group(1), v - m0.get(k, 0.0)))
    return sorted(out, key=lambda x: float(x[0]))


def by_code(m):
    """{code: count} from tgring_http_requests_total."""
    out = {}
    for k, v in m.items():
        g = re.fullmatch(r'tgring_http_requests_total\{code="(\d+)"\}', k)
        if g:
            out[int(g.group(1))] = v
    return out


class MemCgroup:
    """A memory cgroup under /sys/fs/cgroup, capped at limit bytes: v1's
    memory.limit_in_bytes where the v1 memory controller is mounted, else v2's
    memory.max. Created here, removed by remove()."""

    def __init__(self, name, limit):
        v1 = "/sys/fs/cgroup/memory"
        if os.path.exists(f"{v1}/memory.limit_in_bytes"):
            self.version, self.parent = "v1", v1
        else:
            self.version = "v2"
            self.parent = next(p for p in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
                               if "memory" in _read(f"{p}/cgroup.subtree_control", ""))
        self.path = f"{self.parent}/{name}"
        os.makedirs(self.path, exist_ok=True)
        self.limit_file = "memory.limit_in_bytes" if self.version == "v1" else "memory.max"
        _write(f"{self.path}/{self.limit_file}", str(limit))
        if self.version == "v1":  # no swap either, where swap accounting exists
            try:
                _write(f"{self.path}/memory.memsw.limit_in_bytes", str(limit))
            except OSError:
                pass
        self.limit = limit

    def describe(self):
        return f"cgroup {self.version}, {self.path}/{self.limit_file} = {self.limit}"

    def join(self):
        """Moves the calling process into the group (a preexec_fn)."""
        _write(f"{self.path}/cgroup.procs", str(os.getpid()))

    def usage(self):
        f = "memory.usage_in_bytes" if self.version == "v1" else "memory.current"
        return _int(_read(f"{self.path}/{f}", ""))

    def peak(self):
        f = "memory.max_usage_in_bytes" if self.version == "v1" else "memory.peak"
        return _int(_read(f"{self.path}/{f}", ""))

    def reset_peak(self):
        f = "memory.max_usage_in_bytes" if self.version == "v1" else "memory.peak"
        try:
            _write(f"{self.path}/{f}", "0")
            return True
        except OSError:
            return False

    def oom_kills(self):
        f = "memory.oom_control" if self.version == "v1" else "memory.events"
        for line in _read(f"{self.path}/{f}", "").splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return None

    def remove(self):
        for _ in range(50):
            for pid in _read(f"{self.path}/cgroup.procs", "").split():
                try:
                    _write(f"{self.parent}/cgroup.procs", pid)
                except OSError:
                    pass
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        if default is None:
            raise
        return default


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _int(s):
    s = s.strip()
    return int(s) if s.isdigit() else None


class Sampler(threading.Thread):
    """Every `period` s: seconds since start, tgring's RssAnon (kB), the cgroup's
    usage, and tgring's responses by status; written to `path` on stop()."""

    def __init__(self, path, pid, port, cgroup, period=0.25):
        super().__init__(daemon=True)
        self.path, self.pid, self.port, self.cg, self.period = path, pid, port, cgroup, period
        self.rows, self.marks = [], []
        self.t0 = time.monotonic()
        self._done = threading.Event()

    def mark(self, text):
        self.marks.append((time.monotonic() - self.t0, text))

    def run(self):
        nxt = time.monotonic()
        while not self._done.is_set():
            codes = by_code(metrics(self.port))
            self.rows.append((time.monotonic() - self.t0, status_kb(self.pid, "RssAnon"),
                              self.cg.usage() if self.cg else None, codes))
            nxt += self.period
            self._done.wait(max(0.0, nxt - time.monotonic()))

    def stop(self):
        self._done.set()
        self.join()
        with open(self.path, "w") as f:
            f.write("# t_s rss_anon_kb cgroup_bytes 2xx_per_s 503_per_s other_per_s\n")
            for t, text in self.marks:
                f.write(f"# mark {t:.2f} {text}\n")
            prev = None
            for t, rss, cg, codes in self.rows:
                if prev is not None and codes and prev[3] and t > prev[0]:
                    dt = t - prev[0]
                    d = {c: codes.get(c, 0) - prev[3].get(c, 0) for c in codes}
                    ok = sum(v for c, v in d.items() if 200 <= c < 300)
                    busy = d.get(503, 0)
                    other = sum(d.values()) - ok - busy
                    f.write(f"{t:.2f} {rss or 0} {cg or 0} {ok / dt:.1f} {busy / dt:.1f} "
                            f"{other / dt:.1f}\n")
                prev = (t, rss, cg, codes)
        return self.path

    def max_rss_kb(self):
        return max((r[1] for r in self.rows if r[1] is not None), default=None)
