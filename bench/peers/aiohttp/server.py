# SPDX-License-Identifier: MIT
"""bench/peers/aiohttp/server.py - an aiohttp + asyncpg webhook receiver doing
tgring's ingestion: POST /webhook/telegram with X-Telegram-Bot-Api-Secret-Token
(401 when wrong or missing), the body parsed as JSON, update_id, the update
type, the chat id and the sender id extracted as tgring extracts them
(../columns.py), the row inserted into peer_updates (ON CONFLICT (update_id)
DO NOTHING) through an asyncpg pool, and the 200 sent only once the INSERT
returned (autocommit: committed). Malformed JSON or no usable update_id: 400.

Started by ./run PORT DATABASE_URL SECRET [POOL]; the environment carries them
as PEER_PORT, DATABASE_URL, PEER_SECRET and PEER_POOL. Prints "listening PORT"
once it accepts connections; SIGTERM stops it.
"""

import asyncio
import hmac
import json
import os
import signal
import sys

import asyncpg
from aiohttp import web

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from columns import extract  # noqa: E402  (bench/peers/columns.py)

PATH = "/webhook/telegram"
SQL = os.path.join(HERE, "..", "peer_updates.sql")
INSERT = ("INSERT INTO peer_updates (update_id, update_type, chat_id, from_id, body) "
          "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (update_id) DO NOTHING")


async def webhook(request):
    secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not hmac.compare_digest(secret.encode(), request.app["secret"]):
        return web.Response(status=401)
    body = await request.read()
    try:
        row = extract(json.loads(body))
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        row = None
    if row is None:
        return web.Response(status=400)
    await request.app["pool"].execute(INSERT, *row, body)
    return web.Response(status=200)


async def main():
    try:
        port = int(os.environ["PEER_PORT"])
        url = os.environ["DATABASE_URL"]
        secret = os.environ["PEER_SECRET"].encode()
        size = int(os.environ.get("PEER_POOL") or 10)
    except (KeyError, ValueError):
        sys.exit("aiohttp peer: PEER_PORT, DATABASE_URL, PEER_SECRET and PEER_POOL are required")
    pool = await asyncpg.create_pool(url, min_size=size, max_size=size)
    with open(SQL) as f:
        await pool.execute(f.read())
    app = web.Application()
    app["pool"] = pool
    app["secret"] = secret
    app.router.add_post(PATH, webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"listening {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
