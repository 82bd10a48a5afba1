"""matching's request/reply queries, asked directly: the bodies requesters read, and micro's view.

The gateway, liquidity and the tests ask ``ex.query.<what>`` and read the body only; the
endpoints are also a ``nats.micro`` service, so ``$SRV.INFO`` lists them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import pytest

from stockctl.wire import names
from tests.support.stack import make_settings, wipe_exchange

pytestmark = pytest.mark.integration


async def _ask(url: str, subject: str, payload: bytes) -> tuple[bytes, dict[str, str]]:
    nc = await nats.connect(url, connect_timeout=5)
    try:
        resp = await nc.request(subject, payload, timeout=5)
        return resp.data, dict(resp.headers or {})
    finally:
        await nc.close()


def test_queries_answer_with_their_bodies_and_are_listed_as_a_micro_service(servers, tmp_path: Path, daemons) -> None:
    # Arrange: a fresh exchange with only the matching daemon.
    wipe_exchange(servers)
    settings = make_settings(servers, tmp_path / "home")
    matching = daemons("matching", settings)

    def ask(subject: str, payload: bytes) -> tuple[bytes, dict[str, str]]:
        return asyncio.run(_ask(servers.nats_url, subject, payload))

    # Act
    markets, _ = ask(names.query_subject("markets"), b"{}")
    book, _ = ask(names.query_subject("book"), b'{"market": "TATA_INR"}')
    outcome, _ = ask(names.query_subject("outcome"), b'{"user": "nobody", "client_order_id": "x"}')
    unknown, unknown_headers = ask(names.query_subject("book"), b'{"market": "NOPE"}')
    malformed, _ = ask(names.query_subject("balances"), b"{")
    info, _ = ask("$SRV.INFO.stockctl-matching", b"")

    # Assert: the bodies as requesters read them; bad queries keep their JSON shape.
    assert "TATA_INR" in [m["symbol"] for m in json.loads(markets)]
    assert json.loads(book) == {"market": "TATA_INR", "seq": 0, "bids": [], "asks": [], "last": None}
    assert outcome == b"null"
    assert json.loads(unknown)["error"] == "bad_query"
    assert unknown_headers.get("Nats-Service-Error-Code") == "400"
    assert json.loads(malformed)["error"] == "bad_query"
    endpoints = {e["name"]: e["subject"] for e in json.loads(info)["endpoints"]}
    assert endpoints == {w: names.query_subject(w) for w in ("balances", "orders", "book", "outcome", "markets")}
    assert matching.terminate() == 0
