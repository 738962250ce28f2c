# SPDX-License-Identifier: MIT
"""Pieces the bots' tests (the quit-smoking bot's and the example's) share:
updates as Telegram sends them,
a conversation posted one update at a time (as Telegram does per chat), and
the Bot API calls about one chat from the stand-in's record."""

import json

import botapi_helpers as bh
import harness

BOT = "quit_smoking_test_bot"  # the stand-in's getMe username
FAST_RATES = {"TELEGRAM_RATE_GLOBAL": "5000/s", "TELEGRAM_RATE_CHAT": "1000/s",
              "TELEGRAM_RATE_GROUP": "1000/s"}
QUOTE_MARKUP = {"inline_keyboard": [[{"text": "Another one", "callback_data": "quote"}]]}


def msg(update_id, user, text, chat=None, chat_type="private", lang="en"):
    sender = {"id": user, "is_bot": False, "first_name": "T"}
    if lang is not None:
        sender["language_code"] = lang
    chat = user if chat is None else chat
    return json.dumps({"update_id": update_id, "message": {
        "message_id": update_id, "from": sender, "chat": {"id": chat, "type": chat_type},
        "date": 1700000000, "text": text}}, ensure_ascii=False).encode()


def callback(update_id, user, data, message_id, text="a quote"):
    sender = {"id": user, "is_bot": False, "first_name": "T", "language_code": "en"}
    return json.dumps({"update_id": update_id, "callback_query": {
        "id": f"cb{update_id}", "from": sender, "chat_instance": "1", "data": data,
        "message": {"message_id": message_id, "from": {"id": 1, "is_bot": True,
                                                      "first_name": "B"},
                    "chat": {"id": user, "type": "private"}, "date": 1700000000,
                    "text": text}}}).encode()


def processed(pg, where="true"):
    return int(pg.scalar("SELECT count(*) FROM updates WHERE processed_at IS NOT NULL "
                         f"AND {where}"))


def calls_of(api, chat, callback_ids=()):
    """(method, body) of the calls to `chat` and of the answers to callback
    queries `callback_ids`, oldest first."""
    out = []
    for c in api.calls():
        b = c.get("body") or {}
        if str(b.get("chat_id")) == str(chat) or \
                (c["method"] == "answerCallbackQuery" and b.get("callback_query_id") in
                 callback_ids):
            out.append((c["method"], b))
    return out


async def post_all(t, srv, bodies):
    """Posts each update in turn on one connection; all must be stored."""
    p = harness.Poster(srv.port, "/webhook/telegram", srv.env["TELEGRAM_WEBHOOK_SECRET"])
    try:
        for body in bodies:
            status, _, _ = await p.post(body)
            t.eq(status, 200, f"update {json.loads(body)['update_id']} stored")
    finally:
        p.close()


async def settle(pg, where, count, timeout=30):
    """Waits until `count` updates matching `where` are processed and the outbox is drained."""
    ok = await bh.wait_for(lambda: processed(pg, where) >= count, timeout)
    await bh.wait_for(lambda: bh.pending(pg) == 0, timeout)
    return ok
