# SPDX-License-Identifier: MIT
"""A second SIGTERM or SIGINT during the graceful drain stops tgring at once.
Updates wait on a locked table with a long ack timeout and grace period, so
the drain after the first signal would take a minute; the second signal ends
it within seconds, the stuck updates are answered 503 (never 200), and the
exit status is 128 + the second signal's number (143 SIGTERM, 130 SIGINT).
With TGRING_WORKERS=2 the supervisor does the same, and a SIGTERM that also
reaches each worker directly (as from systemd, which signals the whole
cgroup) counts as one stop, not two."""

import asyncio
import random
import signal
import time

import harness

LONG_MS = 60000
# The first signal must not end the drain: it is still running after this.
DRAIN_CHECK_S = 1.5
# The second signal's exit, with room for a loaded machine to reap an ASan build.
PROMPT_S = 5.0


async def stuck_posts(srv, secret, path, base, n=4):
    async def post(i):
        p = harness.Poster(srv.port, path, secret)
        body, _ = harness.make_update(base + i, "message", chat_id=base + i, from_id=1)
        st, _, _ = await p.post(body, timeout=LONG_MS / 1000 + 10)
        p.close()
        return st
    return asyncio.gather(*(post(i) for i in range(n)))


async def case(h, pg, name, first, second, want_rc, workers=1, direct_to_workers=False):
    t = h.t
    secret = harness.random_secret()
    path = "/webhook/telegram"
    srv = h.tgring(h.serve_env(pg, secret, TGRING_SHUTDOWN_TIMEOUT_MS=LONG_MS,
                               TGRING_ACK_TIMEOUT_MS=LONG_MS, TGRING_WORKERS=workers))
    t.ok(srv.wait_ready(30), f"{name}: ready")
    kids = harness.children(srv.pid) if workers > 1 else []
    if workers > 1:
        t.eq(len(kids), workers, f"{name}: {workers} worker processes")
    locker = pg.lock_table("updates")
    try:
        posts = await stuck_posts(srv, secret, path, random.randrange(10**9, 2 * 10**9))
        await asyncio.sleep(0.5)
        srv.signal(first)
        if direct_to_workers:
            for pid in kids:
                harness.os.kill(pid, first)
        rc = await asyncio.to_thread(srv.wait, DRAIN_CHECK_S)
        t.ok(rc is None, f"{name}: after the first signal the drain waits for the stuck updates",
             f"exit {rc}\n{srv.tail()}")
        t0 = time.monotonic()
        srv.signal(second)
        rc = await asyncio.to_thread(srv.wait, PROMPT_S + 30)
        took = time.monotonic() - t0
        res = await posts
    finally:
        pg.unlock(locker)
    t.eq(rc, want_rc, f"{name}: the second signal exits with status {want_rc}", srv.tail())
    t.ok(rc is not None and took <= PROMPT_S, f"{name}: promptly (within {PROMPT_S} s)",
         f"took {took:.2f} s")
    t.ok(all(st != 200 for st in res) and any(st == 503 for st in res),
         f"{name}: the stuck updates are answered 503, none 200", f"{res}")
    t.ok("shutdown_forced" in srv.log(), f"{name}: the forced stop is logged")
    left = [pid for pid in kids if harness.pid_alive(pid)]
    t.ok(not left, f"{name}: no worker process is left", f"{left}")


async def main(h):
    pg = h.postgres()
    h.migrate(pg.url())
    await case(h, pg, "SIGTERM twice", signal.SIGTERM, signal.SIGTERM, 143)
    await case(h, pg, "SIGTERM then SIGINT", signal.SIGTERM, signal.SIGINT, 130)
    await case(h, pg, "2 workers, SIGTERM twice", signal.SIGTERM, signal.SIGTERM, 143,
               workers=2)
    await case(h, pg, "2 workers, SIGTERM to every process, then SIGINT", signal.SIGTERM,
               signal.SIGINT, 130, workers=2, direct_to_workers=True)


harness.run(main)
