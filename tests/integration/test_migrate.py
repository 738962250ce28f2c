# SPDX-License-Identifier: MIT
"""The subcommands around serving: migrate (idempotent, records what it
applied, creates the tables), healthcheck (exit 0 against a ready server, 1
otherwise), version, --help (names every variable) and an unknown command."""

import glob
import os
import re
import signal
import time

import harness

ENV_VARS = ["DATABASE_URL", "TELEGRAM_WEBHOOK_SECRET", "TGRING_LISTEN", "TGRING_WEBHOOK_PATH",
            "TGRING_WORKERS", "LOG_LEVEL", "LOG_FORMAT", "TGRING_MAX_BODY", "TGRING_QUEUE_MAX",
            "TGRING_ACK_TIMEOUT_MS", "TGRING_SHUTDOWN_TIMEOUT_MS", "TGRING_HEADER_TIMEOUT_MS",
            "TGRING_IDLE_TIMEOUT_MS", "TGRING_MAX_CONNECTIONS"]

UPDATES_COLUMNS = {
    "update_id": ("bigint", "NO"),
    "received_at": (None, None),
    "update_type": ("text", None),
    "chat_id": ("bigint", None),
    "from_id": ("bigint", None),
    "body": ("bytea", "NO"),
    "processed_at": (None, None),
}


async def main(h):
    t = h.t
    # With a password, which the URLs below (DATABASE_URL_FILE's too) carry.
    pg = h.postgres(password=harness.random_password())
    url = pg.url()
    # tgring's own and those of its application, the quit-smoking bot (1000 and up).
    files = sorted(glob.glob(os.path.join(harness.SRC, "migrations", "[0-9]*_*.sql")) +
                   glob.glob(os.path.join(harness.SRC, "src", "bot", "quit", "[0-9]*_*.sql")),
                   key=os.path.basename)
    want_versions = [int(os.path.basename(f).split("_", 1)[0]) for f in files]

    rc, out, err = h.run(["migrate"], {"DATABASE_URL": url})
    t.eq(rc, 0, "tgring migrate: exit 0", err)
    rows = pg.psql("SELECT version, name, applied_at IS NOT NULL FROM schema_migrations "
                   "ORDER BY version")
    t.ok(rows, "schema_migrations has rows", f"{rows}")
    t.eq([int(r[0]) for r in rows], want_versions,
         "one schema_migrations row per migration file (tgring's and the bot's)", f"files: {files}")
    t.ok(all(r[1] and r[2] == "t" for r in rows), "each row has a name and applied_at", f"{rows}")
    stamp = pg.psql("SELECT version, applied_at FROM schema_migrations ORDER BY version")

    rc, out, err = h.run(["migrate"], {"DATABASE_URL": url})
    t.eq(rc, 0, "a second tgring migrate: exit 0", err)
    t.eq(pg.psql("SELECT version, applied_at FROM schema_migrations ORDER BY version"), stamp,
         "the second run applied nothing")

    tables = {r[0] for r in pg.psql("SELECT table_name FROM information_schema.tables "
                                    "WHERE table_schema = 'public'")}
    t.ok({"updates", "schema_migrations"} <= tables, "tables updates and schema_migrations exist",
         f"{sorted(tables)}")
    cols = {r[0]: (r[1], r[2]) for r in pg.psql(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = 'updates'")}
    for name, (typ, nullable) in UPDATES_COLUMNS.items():
        got = cols.get(name)
        ok = got is not None and (typ is None or got[0] == typ) and \
            (nullable is None or got[1] == nullable)
        t.ok(ok, f"updates.{name} is {typ or 'present'}{' not null' if nullable == 'NO' else ''}",
             f"got {got}")
    pk = pg.psql("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                 "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'updates'::regclass "
                 "AND i.indisprimary")
    t.eq([r[0] for r in pk], ["update_id"], "update_id is the primary key of updates")

    # DATABASE_URL_FILE: the URL from a file, less its trailing newline.
    pg.createdb("viafile")
    url_file = os.path.join(h.workdir, "database_url")
    with open(url_file, "w") as f:
        f.write(pg.url("viafile") + "\n")
    rc, out, err = h.run(["migrate"], {"DATABASE_URL_FILE": url_file})
    t.eq(rc, 0, "migrate with DATABASE_URL_FILE: exit 0", err)
    n = pg.scalar("SELECT count(*) FROM schema_migrations", db="viafile")
    t.eq(n, str(len(want_versions)), "and it migrated that database")

    # healthcheck against a ready server, a server without its database, and no server.
    srv = h.tgring(h.serve_env(pg))
    t.ok(srv.wait_ready(30), "server ready")
    listen = {"TGRING_LISTEN": f"127.0.0.1:{srv.port}"}
    rc, out, err = h.run(["healthcheck"], listen, timeout=30)
    t.eq(rc, 0, "tgring healthcheck against a ready server: exit 0", err)
    pg.stop("fast")
    ok = False
    deadline = time.monotonic() + 10
    while not ok and time.monotonic() < deadline:
        rc, out, err = h.run(["healthcheck"], listen, timeout=30)
        ok = rc == 1
        if not ok:
            time.sleep(0.2)
    t.ok(ok, "tgring healthcheck while the database is down: exit 1", f"last exit {rc}: {err}")
    pg.start()
    t.ok(srv.wait_ready(20), "ready again after the database is back")
    srv.signal(signal.SIGINT)
    rc = srv.wait(15)
    t.eq(rc, 0, "tgring exits 0 on SIGINT")
    rc, out, err = h.run(["healthcheck"], listen, timeout=30)
    t.eq(rc, 1, "tgring healthcheck with nothing listening: exit 1", err)

    rc, out, err = h.run(["version"], {})
    t.eq(rc, 0, "tgring version: exit 0", err)
    t.ok(re.search(r"\d+\.\d+\.\d+", out), "it prints a version number", f"stdout: {out!r}")

    rc, out, err = h.run(["--help"], {})
    t.eq(rc, 0, "tgring --help: exit 0", err)
    text = out + err
    missing = [v for v in ENV_VARS if v not in text]
    t.ok(not missing, "--help names every environment variable", f"missing: {missing}")
    t.ok("_FILE" in text, "--help mentions the NAME_FILE form for secrets")
    cmds = [c for c in ("serve", "migrate", "healthcheck", "version") if c not in text]
    t.ok(not cmds, "--help names the subcommands", f"missing: {cmds}")

    rc, out, err = h.run(["no-such-command"], {})
    t.ok(rc not in (0, None), "an unknown subcommand exits non-zero", f"exit {rc}")
    t.ok(err.strip() != "", "and says so on stderr")


harness.run(main)
