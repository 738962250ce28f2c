# SPDX-License-Identifier: MIT
"""The database password never reaches stderr: `tgring migrate` and the
server, given DATABASE_URLs whose password holds an unencoded '%', '@' or '/',
a malformed escape (%zz), or a good password with a host that cannot be
resolved (once as a plain wrong host, once a host name made of the password,
so that libpq's message quotes it). Malformed and ambiguous URLs are refused
at start as a configuration problem (exit 1); the others fail to connect (the
server keeps retrying, once a second) and the password is not in any line.
No PostgreSQL is needed: nothing here ever connects."""

import time

import harness

# Two distinctive halves: libpq quotes the part after an unencoded '@' as a
# host, the part before a '/' as a port, so each must be absent on its own.
HEAD = "Kq7vHead"
TAIL = "Zr9xTail"


def urls():
    """(description, DATABASE_URL, refused at start)."""
    return [
        ("an unencoded '%'", f"postgresql://u:{HEAD}%{TAIL}@127.0.0.1:1/db", True),
        ("an unencoded '@'", f"postgresql://u:{HEAD}@{TAIL}@127.0.0.1:1/db", True),
        ("a malformed escape %zz", f"postgresql://u:{HEAD}%zz{TAIL}@127.0.0.1:1/db", True),
        ("an unencoded '/'", f"postgresql://u:{HEAD}/{TAIL}@127.0.0.1:1/db", True),
        ("a conninfo libpq cannot parse", f"host=127.0.0.1 password={HEAD} {TAIL}", True),
        ("a wrong host", f"postgresql://u:{HEAD}%40{TAIL}@nohost.invalid:5432/db", False),
        ("a host named like the password",
         f"host={HEAD}{TAIL}.invalid port=5432 user=u password={HEAD}{TAIL}", False),
    ]


def leaks(text):
    return [s for s in (HEAD, TAIL) if s in text]


async def main(h):
    t = h.t
    for what, url, refused in urls():
        rc, out, err = h.run(["migrate"], {"DATABASE_URL": url}, timeout=60)
        t.eq(rc, 1, f"migrate, password with {what}: exit 1", err)
        t.ok(not leaks(out + err), f"migrate, password with {what}: not on stdout or stderr",
             err)
        if refused:
            t.ok("DATABASE_URL" in err and "not starting" in err,
                 f"migrate, password with {what}: refused as a configuration problem", err)

        env = {"DATABASE_URL": url, "TELEGRAM_WEBHOOK_SECRET": harness.random_secret(),
               "LOG_LEVEL": "debug"}
        srv = h.tgring(env, wait=False)
        if refused:
            rc = srv.wait(30)
            t.eq(rc, 1, f"serve, password with {what}: exits 1 at start", srv.tail())
        else:
            srv.wait_live(30)
            # Long enough for the start's check and a few once-a-second retry lines.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and srv.log().count("db_connect_failed") < 2:
                time.sleep(0.2)
            t.ok(srv.log().count("db_connect_failed") >= 2,
                 f"serve, password with {what}: logs its retries", srv.tail())
            t.eq(srv.stop(), 0, f"serve, password with {what}: stops with exit 0")
        t.ok(not leaks(srv.log()), f"serve, password with {what}: not in the log", srv.tail())


harness.run(main)
