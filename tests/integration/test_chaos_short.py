# SPDX-License-Identifier: MIT
"""The chaos suite in short (tests/chaos/run is the long one), with the
example bot (tgring-example) and the Bot API stand-in: under a light steady
load (50 /count updates/s over 20 chats, each posted again until it gets its
200, as Telegram does), tgring is killed with SIGKILL and restarted twice,
tgring's PostgreSQL backends are ended with pg_terminate_backend once, and
PostgreSQL is frozen with SIGSTOP for 3 s once, within about 30 s. Then the
books must balance (chaos_helpers.Chaos.finish): every update answered 200
is stored and processed exactly once (the per-chat counters and the outbox's
"count: N" replies are exact), every reply reached the stand-in, only replies
in flight at a fault went out twice, 503s carry Retry-After, 200s resume by
themselves, RSS stays flat and the descriptors return to their baseline."""

import botapi_helpers as bh
from chaos_helpers import Chaos

SCHEDULE = [(4, "kill"), (10, "kill"), (17, "terminate"), (22, "freeze")]
LOAD_S = 30


async def main(h):
    c = Chaos(h, rate=50, chats=20, conns=8)
    await c.start()
    await c.play(SCHEDULE, LOAD_S)
    fig = await c.finish(drain_s=90)
    h.t.diag(c.figures_table(fig, "chaos (short)"))
    h.t.eq(c.srv.stop(), 0, "the last tgring stops cleanly (exit 0)")


if __name__ == "__main__":
    bh.run(main)
