# SPDX-License-Identifier: MIT
"""The Bot API subcommands against the stand-in: set-webhook sends the URL,
the secret, max_connections, allowed_updates and (with the flag)
drop_pending_updates; delete-webhook; webhook-info prints what the stand-in
was told to report; a token the Bot API rejects (401) makes each exit 1 with
a line naming TELEGRAM_BOT_TOKEN, and serve log that getMe failed for it.
Neither token nor the webhook secret appears in any output."""

import os
import re

import botapi_helpers as bh
import harness

WEBHOOK_URL = "https://bot.example.com/webhook/telegram"


async def main(h):
    t = h.t
    token = bh.random_token()
    bad_token = bh.random_token()
    secret = harness.random_secret()
    api = bh.StandIn(h, token)
    base = {"TELEGRAM_BOT_TOKEN": token, "TELEGRAM_API_URL": api.url,
            "TELEGRAM_CA_FILE": os.path.join(bh.certs(h), "ca.pem"),
            "TELEGRAM_WEBHOOK_SECRET": secret, "TELEGRAM_WEBHOOK_URL": WEBHOOK_URL,
            "LOG_LEVEL": "debug"}
    outputs = []

    def run(args, **env):
        rc, out, err = h.run(args, dict(base, **env))
        outputs.append(out)
        return rc, out, err

    def last(method):
        calls = api.calls(method)
        return calls[-1] if calls else None

    # set-webhook, every field.
    rc, out, err = run(["set-webhook", "--drop-pending-updates"],
                       TELEGRAM_ALLOWED_UPDATES="message,callback_query",
                       TELEGRAM_WEBHOOK_MAX_CONNECTIONS="55")
    t.eq(rc, 0, "set-webhook --drop-pending-updates exits 0", out, err)
    c = last("setWebhook")
    t.ok(c is not None and c["status"] == 200 and c["token_ok"], "setWebhook reached the Bot API")
    t.eq(c and c["body"], {"url": WEBHOOK_URL, "secret_token": secret, "max_connections": 55,
                           "allowed_updates": ["message", "callback_query"],
                           "drop_pending_updates": True},
         "it sent url, secret_token, max_connections, allowed_updates, drop_pending_updates")
    t.ok(c and (c["content_type"] or "").startswith("application/json"), "as JSON")
    t.ok(WEBHOOK_URL in out, "and says where the webhook now points", out)
    info = api._ctl("GET", "/webhook")
    t.ok(info.get("url") == WEBHOOK_URL and info.get("max_connections") == 55,
         "the stand-in's webhook is set", repr(info))

    # set-webhook, the defaults.
    rc, out, err = run(["set-webhook"])
    t.eq(rc, 0, "set-webhook exits 0", out, err)
    c = last("setWebhook")
    t.eq(c and c["body"], {"url": WEBHOOK_URL, "secret_token": secret, "max_connections": 40},
         "without the flag and TELEGRAM_ALLOWED_UPDATES: no drop_pending_updates, no "
         "allowed_updates, max_connections 40")

    # delete-webhook.
    rc, out, err = run(["delete-webhook"])
    t.eq(rc, 0, "delete-webhook exits 0", out, err)
    c = last("deleteWebhook")
    t.ok(c is not None and c["status"] == 200 and not (c["body"] or {}).get(
        "drop_pending_updates"), "deleteWebhook was called without drop_pending_updates",
        repr(c))
    t.ok(re.search(r"deleted", out), "and says so", out)
    t.eq(api._ctl("GET", "/webhook").get("url"), "", "the stand-in's webhook is gone")
    rc, out, err = run(["delete-webhook", "--drop-pending-updates"])
    t.eq(rc, 0, "delete-webhook --drop-pending-updates exits 0", out, err)
    c = last("deleteWebhook")
    t.eq(c and c["body"], {"drop_pending_updates": True}, "with drop_pending_updates: true")

    # webhook-info.
    api.set_webhook_info(url=WEBHOOK_URL, pending_update_count=17, max_connections=40,
                         last_error_date=1700000000,
                         last_error_message="Wrong response from the webhook: 503 Service "
                                            "Unavailable",
                         allowed_updates=["message"])
    rc, out, err = run(["webhook-info"])
    t.eq(rc, 0, "webhook-info exits 0", out, err)
    t.ok(last("getWebhookInfo") is not None, "getWebhookInfo was called")
    for want in (f"url: {WEBHOOK_URL}", "pending_update_count: 17",
                 "last_error_message: Wrong response from the webhook: 503 Service Unavailable",
                 "last_error_date: 2023-11-14T22:13:20Z", "max_connections: 40"):
        t.ok(want in out.splitlines(), f"webhook-info prints {want!r}", out)

    # A token the Bot API does not know.
    for args in (["set-webhook"], ["delete-webhook"], ["webhook-info"]):
        n = len(api.calls())
        rc, out, err = run(args, TELEGRAM_BOT_TOKEN=bad_token)
        t.eq(rc, 1, f"{args[0]} with a rejected token exits 1", out, err)
        t.ok(re.search(r"401", err) and "TELEGRAM_BOT_TOKEN" in err,
             f"{args[0]}: says the Bot API answered 401 and names TELEGRAM_BOT_TOKEN", err)
        new = api.calls()[n:]
        t.ok(len(new) == 1 and new[0]["status"] == 401 and not new[0]["token_ok"],
             f"{args[0]}: one call, answered 401", repr(new))

    # serve with that token: getMe fails, and the log says why.
    pg = h.postgres()
    h.migrate(pg.url())
    srv = h.tgring(bh.send_env(h, pg, api, bad_token, TELEGRAM_WEBHOOK_SECRET=secret,
                               LOG_LEVEL="debug"))
    t.ok(srv.wait_ready(30), "serve with a rejected token still serves webhooks")
    failed = await bh.wait_for(lambda: [e for e in bh.log_events(srv.log())
                                        if e.get("event") == "getme_failed"], 15)
    t.ok(failed and "401" in failed[0]["msg"] and "TELEGRAM_BOT_TOKEN" in failed[0]["msg"],
         "serve logs getme_failed with 401, naming TELEGRAM_BOT_TOKEN", srv.tail(10))
    t.eq(srv.stop(), 0, "and stops cleanly (exit 0)")

    bh.scan_secrets(h, [token, bad_token, secret], outputs)


if __name__ == "__main__":
    bh.run(main)
