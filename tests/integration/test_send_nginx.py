# SPDX-License-Identifier: MIT
"""Sending through a TLS server written elsewhere: nginx (OpenSSL), TLS 1.2
only, with the test CA's certificate, proxies to the Bot API stand-in over
plain HTTP. tgring (TELEGRAM_API_URL=https://localhost:<nginx>) calls getMe
and delivers every outbox row through it with the exact body, and keeps its
connections: nginx's access log shows few TLS connections carrying many
requests, and tgring's handshake metrics agree."""

import collections
import json
import shutil

import botapi_helpers as bh
import harness

CONNS = 4
CHATS = 10
PER_CHAT = 12
FAST_RATES = {"TELEGRAM_RATE_GLOBAL": "1000/s", "TELEGRAM_RATE_CHAT": "100/s",
              "TELEGRAM_RATE_GROUP": "100/s"}


def canon(body):
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


async def main(h):
    t = h.t
    if shutil.which("nginx") is None:
        t.skip("delivery through nginx", "nginx not installed (apt-get install nginx-light)")
        return
    token, secret, pg, api = bh.setup(h, plain=True)
    ngx = bh.Nginx(h, api.port)
    env = bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                      TELEGRAM_API_URL=f"https://localhost:{ngx.port}",
                      TGRING_API_CONNECTIONS=CONNS, **FAST_RATES)
    srv = h.tgring(env)
    t.ok(srv.wait_ready(30), "tgring is ready")

    getme = await bh.wait_for(lambda: api.calls("getMe"), 15)
    t.ok(len(getme) == 1 and getme[0]["status"] == 200 and getme[0]["token_ok"],
         "getMe reached the stand-in through nginx", repr(getme))
    logged = await bh.wait_for(lambda: "@quit_smoking_test_bot" in srv.log(), 10)
    t.ok(logged, "the log names the bot's username", srv.tail(20))

    expected = [(c, "sendMessage", bh.message(c, f"n{c}-{i}", harness.TEXTS[i % 8]))
                for i in range(PER_CHAT) for c in range(1, CHATS + 1)]
    bh.insert_rows(pg, expected)
    done = await bh.wait_for(lambda: bh.pending(pg) == 0, 40, 0.2)
    t.ok(done, f"{len(expected)} rows sent through nginx within 40 s",
         lambda: f"{bh.pending(pg)} still pending", srv.tail(10))

    calls = api.calls("sendMessage")
    want = collections.Counter(canon(b) for _, _, b in expected)
    got = collections.Counter(canon(c["body"]) for c in calls)
    t.ok(got == want, "each row's exact body arrived once", lambda: f"{len(calls)} calls")
    t.ok(all(r["sent"] and not r["failed"] for r in bh.rows(pg)), "every row has sent_at")

    # $connection is nginx's connection serial number, $connection_requests the
    # requests it carried so far.
    entries = []
    for line in ngx.access_log().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0] == "conn":
            entries.append({"conn": parts[1], "reqs": int(parts[2]), "reused": parts[3],
                            "proto": parts[4], "cipher": parts[5]})
    t.eq(len(entries), len(expected) + 1, "nginx logged every request (getMe and the sends)")
    conns = {e["conn"] for e in entries}
    t.ok(1 <= len(conns) <= CONNS + 2,
         f"{len(entries)} requests over {len(conns)} TLS connections "
         f"(TGRING_API_CONNECTIONS={CONNS})")
    t.ok(max((e["reqs"] for e in entries), default=0) >= 10,
         "connections carried many requests each (keep-alive)")
    t.ok(entries and all(e["proto"] == "TLSv1.2" for e in entries), "all over TLS 1.2",
         repr(entries[:2]))
    t.ok(entries and all(e["cipher"].startswith("ECDHE-") and
                         ("GCM" in e["cipher"] or "CHACHA20" in e["cipher"])
                         for e in entries), f"ECDHE with an AEAD ({entries[0]['cipher']})"
         if entries else "ECDHE with an AEAD")

    await bh.wait_for(lambda: False, 1.5)
    m = srv.metrics()
    hs = (harness.metric(m, "tgring_tls_handshakes_full_total") or 0) + \
        (harness.metric(m, "tgring_tls_handshakes_resumed_total") or 0)
    t.eq(int(hs), len(conns), "tgring's handshake count equals nginx's TLS connections")
    t.eq(harness.metric(m, "tgring_tls_failures_total"), 0.0, "no TLS failure")
    t.eq(harness.metric(m, "tgring_outbox_sent_total"), float(len(expected)),
         "tgring_outbox_sent_total counts every row")
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
