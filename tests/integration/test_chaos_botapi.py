# SPDX-License-Identifier: MIT
"""The short version of tests/chaos/botapi_faults.py (see there): the example
bot sending through a Bot API stand-in that answers 429 (per chat and
global), 5xx, a final 403, slowly past the call deadline, cut mid-answer and
with resets, all in one phase; then, for a few seconds each, a listener that
fails every TLS handshake and a stand-in with a certificate from an unknown
CA on the same port. No rate limit exceeded, nothing lost, nothing sent over
an unverified connection, and the sender catches up after each fault."""

import os
import sys

import botapi_helpers as bh
import harness

sys.path.insert(0, os.path.join(harness.SRC, "tests", "chaos"))
import botapi_faults  # noqa: E402

if __name__ == "__main__":
    bh.run(lambda h: botapi_faults.run_faults(h, botapi_faults.SHORT))
