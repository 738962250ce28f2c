# SPDX-License-Identifier: MIT
"""Database outage: updates are posted continuously from several connections
while PostgreSQL is stopped and started again. During the outage every answer
is a 503 with Retry-After (never a hang, never a 200 for something not
committed; how long answers took is reported), readiness says 503 and memory stays flat; afterwards 200s resume
on their own and every update that got a 200 is in the table."""

import asyncio
import itertools
import random
import time

import harness

ACK_MS = 2000
CONNS = 8
BEFORE_S = 2.0
OUTAGE_S = 6.0
AFTER_S = 2.0
# How long the test waits for 200s after the restart; how long they took is reported.
RESUME_WAIT_S = 30.0
RSS_GROWTH_LIMIT_KB = 48 * 1024


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    secret = harness.random_secret()
    path = "/webhook/telegram"
    # A small ASan quarantine keeps freed memory from looking like growth.
    srv = h.tgring(h.serve_env(pg, secret, TGRING_ACK_TIMEOUT_MS=ACK_MS),
                   extra_asan={"quarantine_size_mb": "8"})
    t.ok(srv.wait_ready(30), "ready before the outage")

    base = random.randrange(10**9, 2 * 10**9)
    ids = itertools.count(base)
    log = []  # (start time, update_id, outcome, seconds, Retry-After)
    stop = asyncio.Event()
    # The client waits long past the ack timeout, so that a slow machine shows
    # as a reported figure; a hang still shows as an unanswered request.
    limit = ACK_MS / 1000 + 30.0

    async def poster(k):
        p = harness.Poster(srv.port, path, secret)
        try:
            while not stop.is_set():
                uid = next(ids)
                body, _ = harness.make_update(uid, "message", chat_id=7000 + k, from_id=9000 + k,
                                              text=f"outage test {uid}")
                t0 = time.monotonic()
                st, resp, dt = await p.post(body, timeout=limit)
                ra = resp.header("retry-after") if isinstance(resp, harness.Response) else None
                log.append((t0, uid, st, dt, ra))
                if st != 200:
                    # Telegram backs off after an error; do too, a little.
                    await asyncio.sleep(0.05)
        finally:
            p.close()

    def ready_status():
        try:
            return harness.http_get(srv.port, "/health/ready", timeout=limit)[0]
        except OSError as e:
            return repr(e)

    tasks = [asyncio.create_task(poster(k)) for k in range(CONNS)]
    await asyncio.sleep(BEFORE_S)
    rss_before = harness.proc_status(srv.pid, "VmRSS")

    t_stop = time.monotonic()
    await asyncio.to_thread(pg.stop, "fast")
    t_stopped = time.monotonic()
    # The outage, as the server sees it, begins when readiness says so.
    t_down = None
    while t_down is None and time.monotonic() - t_stopped < OUTAGE_S:
        if await asyncio.to_thread(ready_status) == 503:
            t_down = time.monotonic()
        else:
            await asyncio.sleep(0.05)
    t.ok(t_down is not None, "/health/ready turns 503 once the database is stopped")
    if t_down is None:
        t_down = t_stopped
    rss = []
    ready_during = []
    while time.monotonic() - t_stopped < OUTAGE_S:
        await asyncio.sleep(0.25)
        rss.append(harness.proc_status(srv.pid, "VmRSS") or 0)
        if len(rss) % 4 == 0:
            ready_during.append(await asyncio.to_thread(ready_status))

    t_start = time.monotonic()
    await asyncio.to_thread(pg.start)
    t_started = time.monotonic()
    resumed_at = None
    while time.monotonic() - t_started < RESUME_WAIT_S:
        oks = [e for e in log if e[0] >= t_started and e[2] == 200]
        if oks:
            resumed_at = min(e[0] + e[3] for e in oks)
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(AFTER_S)
    stop.set()
    await asyncio.gather(*tasks)

    before = [e for e in log if e[0] + e[3] < t_stop]
    during = [e for e in log if t_down <= e[0] and e[0] + e[3] < t_start]
    outcomes = sorted({str(e[2]) for e in log})
    t.ok(before and all(e[2] == 200 for e in before), "all 200 before the outage",
         f"{len(before)} requests, outcomes {sorted({str(e[2]) for e in before})}")
    t.ok(during and all(e[2] == 503 for e in during), "503 for every update during the outage",
         f"{len(during)} requests, outcomes {sorted({str(e[2]) for e in during})}")
    t.ok(all(e[2] in (200, 503) for e in log), "every request was answered 200 or 503",
         f"outcomes seen: {outcomes}; others: "
         f"{[(e[1], e[2], round(e[3], 2)) for e in log if e[2] not in (200, 503)][:10]}")
    no_ra = [e for e in log if e[2] == 503 and not (e[4] or "").strip().isdigit()]
    t.ok(not no_ra, "every 503 has a Retry-After header in seconds",
         f"{len(no_ra)} without, e.g. {no_ra[:3]}")
    slowest = max((e[3] for e in log), default=0)
    t.diag(f"slowest answer {slowest:.2f} s (ack timeout {ACK_MS} ms); the server saw the "
           f"outage {t_down - t_stopped:.2f} s after the database had stopped")
    t.ok(ready_during and all(s == 503 for s in ready_during),
         "/health/ready is 503 while the database is down", f"{ready_during}")
    t.ok(resumed_at is not None, "200s resume after the restart")
    if resumed_at is not None:
        t.diag(f"the first 200 came {resumed_at - t_started:.2f} s after the restart")
    t.ok(await asyncio.to_thread(srv.wait_ready, 15), "/health/ready is 200 again")

    acked = {e[1] for e in log if e[2] == 200}
    stored = {int(r[0]) for r in
              pg.psql(f"SELECT update_id FROM updates WHERE update_id >= {base}")}
    missing = sorted(acked - stored)
    t.ok(acked and not missing, "every update that got a 200 is in the table",
         f"{len(missing)} of {len(acked)} missing, e.g. {missing[:10]}")
    t.diag(f"requests {len(log)}, 200s {len(acked)}, stored {len(stored)}, "
           f"outage requests {len(during)}")

    m = srv.metrics()
    rec = harness.metric(m, "tgring_db_reconnects_total")
    t.ok(rec is not None and rec > 0, "tgring_db_reconnects_total > 0", f"{rec}")
    growth = max(rss) - (rss_before or 0) if rss else None
    t.ok(rss_before and growth is not None and growth < RSS_GROWTH_LIMIT_KB,
         f"VmRSS grew less than {RSS_GROWTH_LIMIT_KB // 1024} MiB during the outage",
         f"before {rss_before} kB, max during {max(rss) if rss else None} kB")
    t.diag(f"VmRSS before {rss_before} kB, during max {max(rss) if rss else None} kB")

    rc = srv.stop()
    t.eq(rc, 0, "tgring exits 0 on SIGTERM")


harness.run(main)
