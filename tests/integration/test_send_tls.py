# SPDX-License-Identifier: MIT
"""Sending, certificates: tgring trusts only TELEGRAM_CA_FILE. Against a Bot
API stand-in whose certificate comes from an unknown CA, or names another
host, or has expired, nothing is delivered (the stand-in records no call),
no row is marked sent, the log names BearSSL's error, and
tgring_tls_failures_total counts the failures. `tgring webhook-info` against
the unknown CA exits 1 and says why. The three servers run side by side, each
with its own database."""

import os
import re

import botapi_helpers as bh
import harness

CASES = [
    # (certificate, what the log must name, description)
    ("server-other", r"BR_ERR_X509_NOT_TRUSTED|not trusted", "a certificate from an unknown CA"),
    ("wrong-host", r"BR_ERR_X509_BAD_SERVER_NAME|another host name",
     "a certificate for another host name"),
    ("expired", r"BR_ERR_X509_EXPIRED|expired", "an expired certificate"),
]


async def main(h):
    t = h.t
    token = bh.random_token()
    secret = harness.random_secret()
    pg = h.postgres(db=None)
    runs = []
    for i, (cert, pattern, what) in enumerate(CASES):
        db = f"tls{i}"
        pg.createdb(db)
        h.migrate(pg.url(db))
        api = bh.StandIn(h, token, cert=cert, name=f"botapi-{cert}")
        env = bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                          DATABASE_URL=pg.url(db))
        srv = h.tgring(env, name=f"tgring-{cert}")
        ids = bh.insert_rows(bh.PgDb(pg, db), [(5, "sendMessage", bh.message(5, f"{cert}-1")),
                                             (-77, "sendMessage", bh.message(-77, f"{cert}-2"))])
        runs.append((cert, pattern, what, db, api, srv, ids))

    for cert, pattern, what, db, api, srv, ids in runs:
        t.ok(srv.wait_ready(30), f"{what}: tgring is ready")

    # Long enough for getMe, the first sends and a retry or two (backoff from 1 s), and for
    # the metrics, which are copied from the pool once a second.
    await bh.wait_for(lambda: False, 4)

    for cert, pattern, what, db, api, srv, ids in runs:
        st = api.stats()
        calls = api.calls()
        t.eq(len(calls), 0, f"{what}: the stand-in got no request", lambda: repr(calls[:3]))
        t.ok(st["handshake_failures"] >= 1,
             f"{what}: the stand-in saw {st['handshake_failures']} failed handshakes", repr(st))
        rows = bh.rows(bh.PgDb(pg, db))
        t.ok(len(rows) == 2 and not any(r["sent"] for r in rows),
             f"{what}: no row is marked sent", repr(rows))
        lines = [e for e in bh.log_events(srv.log()) if e.get("event") == "tls_handshake_failed"]
        t.ok(lines and all(re.search(pattern, e.get("msg", "")) for e in lines),
             f"{what}: the log says tls_handshake_failed naming /{pattern}/",
             lambda: srv.tail(15))
        if lines:
            t.diag(f"{cert}: {lines[0]['msg']}")
        getme = [e for e in bh.log_events(srv.log()) if e.get("event") == "getme_failed"]
        t.ok(getme, f"{what}: getMe's failure is logged", lambda: srv.tail(15))
        m = srv.metrics()
        fails = harness.metric(m, "tgring_tls_failures_total")
        t.ok(fails is not None and fails >= 1, f"{what}: tgring_tls_failures_total is {fails}")
        t.eq(harness.metric(m, "tgring_outbox_sent_total"), 0.0,
             f"{what}: tgring_outbox_sent_total is 0")

    # The subcommand, with the unknown CA.
    cert, pattern, what, db, api, srv, ids = runs[0]
    rc, out, err = h.run(["webhook-info"], {"TELEGRAM_BOT_TOKEN": token,
                                            "TELEGRAM_API_URL": api.url,
                                            "TELEGRAM_CA_FILE": os.path.join(bh.certs(h),
                                                                             "ca.pem"),
                                            "LOG_FORMAT": "text"})
    t.eq(rc, 1, "webhook-info against the unknown CA exits 1", out, err)
    t.ok(re.search(r"webhook-info: .*(certificate|TLS)", err),
         "and prints a line saying the certificate or handshake failed", err)
    t.ok(re.search(pattern, err), f"and the reason /{pattern}/", err)
    t.eq(len(api.calls()), 0, "and the stand-in got no request from it")
    t.eq(out, "", "webhook-info printed nothing on stdout")

    bh.scan_secrets(h, [token, secret], [out])


if __name__ == "__main__":
    bh.run(main)
