# SPDX-License-Identifier: MIT
"""What the chaos scripts (tests/chaos/botapi_faults.py, tests/chaos/hostile.py)
and their short versions (tests/integration/test_chaos_*.py) share: the import
path to the integration harness, a sampler of tgring's resident memory and
descriptors, percentiles, the table of figures, and the scale a run takes.

Only the Python standard library is used.
"""

import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")
if INTEGRATION not in sys.path:
    sys.path.insert(0, INTEGRATION)

import harness  # noqa: E402


def pids(pid):
    """`pid` and its live children (a supervisor's workers)."""
    return [pid] + harness.children(pid)


def figures(pid):
    """(VmRSS kB, VmHWM kB, open descriptors) summed over `pid` and its
    children; (0, 0, 0) once it is gone."""
    rss = hwm = fds = 0
    for p in pids(pid):
        rss += harness.proc_status(p, "VmRSS") or 0
        hwm += harness.proc_status(p, "VmHWM") or 0
        try:
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return rss, hwm, fds


class Sampler:
    """Samples figures(pid) every `step` s in the background of the event
    loop; peak() is the highest RSS and descriptor count since reset()."""

    def __init__(self, pid, step=0.1):
        self.pid = pid
        self.step = step
        self.task = None
        self.reset()

    def reset(self):
        self.peak_rss = self.peak_fds = 0

    def sample(self):
        rss, _, fds = figures(self.pid)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_fds = max(self.peak_fds, fds)
        return rss, fds

    async def _run(self):
        while True:
            self.sample()
            await asyncio.sleep(self.step)

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self):
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None


def percentile(values, p):
    """The p-th percentile (nearest rank) of `values`; None when empty."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def mib(kb):
    return "-" if kb is None else f"{kb / 1024:.1f}"


def table(headers, rows):
    """A Markdown table, columns padded to their widest cell."""
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    width = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, width)) + " |"
    out = [line(cells[0]), "| " + " | ".join("-" * w for w in width) + " |"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def report(title, headers, rows):
    """Prints a table of figures on stdout as TAP comment lines, so that the
    TAP stream stays valid."""
    text = f"{title}\n\n" + table(headers, rows)
    for line in text.splitlines():
        print("# " + line, flush=True)
