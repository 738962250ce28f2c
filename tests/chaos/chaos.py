# SPDX-License-Identifier: MIT
"""The long chaos run; tests/chaos/run builds tgring-example and starts this
(see there for the settings). Under a steady load, first tgring is killed with
SIGKILL at random moments and restarted each time; then PostgreSQL is
stopped with -m immediate for 5 s, its backends ended with
pg_terminate_backend, it is frozen with SIGSTOP for 3 s and the tablespace
of `updates` is filled up for 5 s, in turn with random gaps. The checks are
tests/integration/chaos_helpers.py's (TAP on stdout); the figures go to
stderr and to CHAOS_REPORT."""

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

import botapi_helpers as bh  # noqa: E402
import harness  # noqa: E402
from chaos_helpers import Chaos  # noqa: E402

SECONDS = float(os.environ.get("CHAOS_SECONDS", "180"))
RATE = float(os.environ.get("CHAOS_RATE", "300"))
CHATS = int(os.environ.get("CHAOS_CHATS", "200"))
CONNS = int(os.environ.get("CHAOS_CONNS", "40"))
KILLS = int(os.environ.get("CHAOS_KILLS", "5"))
ORDERED = os.environ.get("CHAOS_ORDER", "chat") == "chat"
DISK = os.environ.get("CHAOS_DISK", "1") == "1"
REPORT = os.environ.get("CHAOS_REPORT", "chaos-report.md")
SEED = int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 31))
WARMUP_S = 5.0
DB_SLOT_S = 13.0  # room for one database fault and the recovery after it


def schedule(seconds, kills, disk):
    """(at, kind) for the run: kills spread over the first 45 %, one at a
    random moment of each of `kills` equal slots; database faults in turn over
    the rest, one per slot of about DB_SLOT_S, each at a random moment of its
    slot's first few seconds."""
    out = []
    split = max(WARMUP_S + 8 * kills, seconds * 0.45)
    slot = (split - WARMUP_S) / kills
    for i in range(kills):
        out.append((WARMUP_S + i * slot + random.uniform(1, max(1.5, slot - 4)), "kill"))
    kinds = ["stop", "terminate", "freeze"] + (["disk"] if disk else [])
    n = max(len(kinds), int((seconds - 5 - split) // DB_SLOT_S))
    slot = max(DB_SLOT_S, (seconds - 5 - split) / n)
    for i in range(n):
        out.append((split + i * slot + random.uniform(0, 3), kinds[i % len(kinds)]))
    return out, max(seconds, out[-1][0] + DB_SLOT_S)


def can_mount():
    """True if a tmpfs can be mounted here (root, and not forbidden)."""
    if not harness.is_root():
        return False
    d = tempfile.mkdtemp(prefix="tgring-chaos-probe-")
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", d],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", d], capture_output=True)
    os.rmdir(d)
    return ok


async def main(h):
    random.seed(SEED)
    disk = DISK and can_mount()
    if DISK and not disk:
        h.t.diag("no tmpfs can be mounted here (not root?): the full-disk fault is left out")
    plan, length = schedule(SECONDS, KILLS, disk)
    h.t.diag(f"seed {SEED}; {length:.0f} s at {RATE:g} updates/s over {CHATS} chats, "
             f"{CONNS} connections; faults at " +
             ", ".join(f"{at:.1f} s {kind}" for at, kind in plan))
    load0 = os.getloadavg()
    c = Chaos(h, rate=RATE, chats=CHATS, conns=CONNS, ordered=ORDERED)
    # Room for the whole run's updates and their index entries, twice over.
    await c.start(disk_mb=max(64, int(RATE * length * 3 // 1024)) if disk else 0)
    t0 = time.monotonic()
    await c.play(plan, length)
    fig = await c.finish(drain_s=300)
    fig["load average at the start / end"] = f"{load0[0]:.2f} / {os.getloadavg()[0]:.2f}"
    title = (f"chaos run {time.strftime('%Y-%m-%d %H:%M')}: {time.monotonic() - t0:.0f} s, "
             f"{RATE:g} updates/s, {CHATS} chats, {CONNS} connections, "
             f"{'chats in order' if ORDERED else 'retries out of order'}, seed {SEED}")
    table = c.figures_table(fig, title)
    if not disk:
        table += "\nThe full-disk fault was not run: no tmpfs could be mounted.\n"
    h.t.eq(c.srv.stop(), 0, "the last tgring stops cleanly (exit 0)")
    verdict = "all checks passed" if not h.t.failed else f"{h.t.failed} checks FAILED"
    table += f"\nChecks: {h.t.n} so far, {verdict} (the sanitizer check follows).\n"
    with open(REPORT, "w") as f:
        f.write(table)
    h.t.diag(table)
    h.t.diag(f"written to {REPORT}")


if __name__ == "__main__":
    bh.run(main)
