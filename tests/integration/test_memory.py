# SPDX-License-Identifier: MIT
"""Memory sized to the cap: tgring reads its memory limit (TGRING_MEMORY_LIMIT, else its
cgroup's) once at start and sizes each worker's request buffers to it.

- A limit the settings cannot fit in is refused: exit status 1, one memory_too_small line
  that names the limit that would fit, nothing served.
- A fitting but small limit lowers the budget (the memory_budget line says so), and the
  lower budget is in force: bodies that a default budget takes all at once get 503 with
  Retry-After past it, while the same load under a large limit is answered without one.
- Where this machine has a writable cgroup v1 memory hierarchy, the limit is read from the
  process's own group when TGRING_MEMORY_LIMIT is unset."""

import asyncio
import json
import os
import re
import subprocess
import time

import harness

BODY = 1_000_000           # bytes of each held body, under TGRING_MAX_BODY
CONNS = 12                 # 12 MB of bodies at once: more than the small budget (~7.9 MiB)
SMALL = {"TGRING_MAX_CONNECTIONS": "64", "TGRING_QUEUE_MAX": "64"}


def budget_mib(log):
    """The per-worker request buffer budget the memory_budget line gives, in MiB."""
    m = re.search(r"request buffers ([0-9.]+) (MiB|KiB) per worker", log)
    if not m:
        return None
    return float(m.group(1)) / (1024 if m.group(2) == "KiB" else 1)


async def hold_bodies(port, secret):
    """Opens CONNS connections, each sending a head and all but the last byte of a big
    update; then finishes them. Returns the statuses (None: closed without an answer)."""
    conns, statuses = [], []
    for i in range(CONNS):
        text = "x" * (BODY - 200)
        body, _ = harness.make_update(9000 + i, text=text)
        head = (f"POST /webhook/telegram HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                f"\r\nX-Telegram-Bot-Api-Secret-Token: {secret}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        c = await harness.HttpConn.open(port)
        await c.send(head + body[:-1])
        conns.append((c, body[-1:]))
    await asyncio.sleep(0.5)
    early = {}
    for k, (c, last) in enumerate(conns):
        # One the server has answered already (a 503 past the budget, then closed) does not
        # get the last byte: a byte sent to a closed socket resets the connection, and the
        # reset can throw the answer away before it is read.
        try:
            r = await c.read_response(timeout=0.05)
            early[k] = (r.status, r.header("retry-after"))
            continue
        except asyncio.TimeoutError:
            pass
        except (harness.ConnectionClosed, ConnectionError, OSError):
            early[k] = (None, None)
            continue
        try:
            await c.send(last)
        except (harness.ConnectionClosed, ConnectionError, OSError):
            pass  # closed meanwhile: read_response below says so (None)
    for k, (c, _) in enumerate(conns):
        if k in early:
            statuses.append(early[k])
        else:
            try:
                r = await c.read_response(timeout=20)
                statuses.append((r.status, r.header("retry-after")))
            except (harness.ConnectionClosed, ConnectionError, OSError, asyncio.TimeoutError):
                statuses.append((None, None))
        c.close()
    return statuses


def cgroup_v1_dir():
    """A writable cgroup v1 memory hierarchy, or None."""
    root = "/sys/fs/cgroup/memory"
    if os.path.exists(os.path.join(root, "memory.limit_in_bytes")) and os.access(root, os.W_OK):
        return root
    return None


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    secret = harness.random_secret()

    # 1. Too small: refused with one line, exit 1.
    env = h.serve_env(pg, secret, TGRING_MEMORY_LIMIT="32m", LOG_FORMAT="text")
    env["TGRING_LISTEN"] = f"127.0.0.1:{harness.free_port()}"
    rc, out, err = h.run(["serve"], env, timeout=30, name="serve-too-small")
    t.eq(rc, 1, "a 32 MiB limit with the default caps is refused (exit 1)", err)
    lines = [l for l in err.splitlines() if "memory_too_small" in l]
    t.eq(len(lines), 1, "one memory_too_small line", err)
    t.ok(lines and re.search(r"raise the limit to at least \d+ MiB", lines[0]),
         "it names the limit that would fit", err)
    t.ok("listening" not in err, "nothing was served", err)

    # 2. Fitting but small: the budget is lowered, and it is the one in force.
    small = h.tgring(h.serve_env(pg, secret, TGRING_MEMORY_LIMIT="32m", LOG_FORMAT="text",
                                 **SMALL), name="serve-small")
    t.ok(small.wait_ready(30), "tgring with a 32 MiB limit and small caps is ready")
    got = budget_mib(small.log())
    t.ok(got is not None and got < 10, f"the budget is lowered to {got} MiB (default 128)",
         small.tail(10))
    t.ok(re.search(r"memory limit 32 MiB \(TGRING_MEMORY_LIMIT\)", small.log()),
         "the start line names the limit and where it came from", small.tail(10))
    statuses = await hold_bodies(small.port, secret)
    busy = [s for s in statuses if s[0] == 503]
    t.ok(busy and all(ra for _, ra in busy),
         f"past the budget bodies get 503 + Retry-After ({len(busy)} of {CONNS})",
         repr(statuses))
    t.ok(any(s[0] == 200 for s in statuses), "within the budget they are stored (200)",
         repr(statuses))
    t.eq(small.stop(), 0, "tgring stops cleanly")

    large = h.tgring(h.serve_env(pg, secret, TGRING_MEMORY_LIMIT="4g", LOG_FORMAT="text",
                                 **SMALL), name="serve-large")
    t.ok(large.wait_ready(30), "tgring with a 4 GiB limit is ready")
    t.eq(budget_mib(large.log()), 128.0, "a large limit keeps the default budget (128 MiB)",
         large.tail(10))
    statuses = await hold_bodies(large.port, secret)
    t.ok(all(s[0] == 200 for s in statuses), "the same load is all stored (200) under it",
         repr(statuses))
    t.eq(large.stop(), 0, "tgring stops cleanly")

    # 3. The cgroup's own limit, where a v1 memory hierarchy can be written here.
    root = cgroup_v1_dir()
    if root is None:
        t.skip("the limit read from the process's cgroup", "no writable cgroup v1 memory")
        return
    group = os.path.join(root, f"tgring-it-memory-{os.getpid()}")
    os.mkdir(group)
    try:
        with open(os.path.join(group, "memory.limit_in_bytes"), "w") as f:
            f.write(str(160 << 20))
        env = {k: os.environ[k] for k in harness.PASS_ENV if k in os.environ}
        env.update(harness.sanitizer_env())
        env.update(h.serve_env(pg, secret, LOG_FORMAT="text", **SMALL))
        port = harness.free_port()
        env["TGRING_LISTEN"] = f"127.0.0.1:{port}"
        logpath = h.logpath("serve-cgroup.log")
        h.logs.append(("serve-cgroup", logpath))

        def enter():
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        with open(logpath, "wb") as log:
            p = subprocess.Popen([harness.BIN, "serve"], env=env, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log, preexec_fn=enter)
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline and "listening" not in text and p.poll() is None:
            await asyncio.sleep(0.1)
            with open(logpath) as f:
                text = f.read()
        p.terminate()
        rc = p.wait(20)
        t.ok(re.search(r"memory limit 160 MiB \(cgroup v1 memory.limit_in_bytes\)", text),
             "without TGRING_MEMORY_LIMIT the limit is the cgroup's", text[-2000:])
        got = budget_mib(text)
        t.ok(got is not None and 100 < got < 128,
             f"and the budget follows it ({got} MiB: 3/4 x 160 MiB less the fixed costs)")
        t.eq(rc, 0, "tgring in the group stops cleanly")
    finally:
        for _ in range(50):
            try:
                os.rmdir(group)
                break
            except OSError:
                time.sleep(0.1)


if __name__ == "__main__":
    harness.run(main)
