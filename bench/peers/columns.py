# SPDX-License-Identifier: MIT
"""The columns tgring extracts from an update (src/tg/update.c), for the
Python peers: the aiohttp server imports extract(); pgbench/run runs this file
on its body file and gets `TYPE CHAT_ID FROM_ID` (NULL where absent) on
stdout, or exits 1 if the file holds no update."""

import json
import sys


def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def extract(update):
    """(update_id, type, chat_id, from_id) of a parsed update, or None when it
    is no update (no update_id, or one out of 0 .. 2^53 - 1). The type is the
    first member besides update_id that holds an object; a callback query's
    chat is its message's; a poll answer's or reaction's sender is its user."""
    if not isinstance(update, dict):
        return None
    uid = _int(update.get("update_id"))
    if uid is None or not 0 <= uid < 1 << 53:
        return None
    kind = next((k for k, v in update.items() if k != "update_id" and isinstance(v, dict)),
                None)
    if kind is None:
        return uid, None, None, None
    payload = update[kind]
    holder = payload.get("message") if kind == "callback_query" else payload
    chat = holder.get("chat") if isinstance(holder, dict) else None
    chat_id = _int(chat.get("id")) if isinstance(chat, dict) else None
    sender = payload.get("user" if kind in ("poll_answer", "message_reaction") else "from")
    from_id = _int(sender.get("id")) if isinstance(sender, dict) else None
    return uid, kind, chat_id, from_id


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        row = extract(json.loads(f.read()))
    # The type goes into SQL text: only a plain name is accepted.
    if row is None or not (row[1] or "").replace("_", "").isalpha() or not row[1].isascii():
        sys.exit(1)
    print(" ".join("NULL" if v is None else str(v) for v in row[1:]))
