"""A crash of matching between storing events and writing what derives from them.

Events go to EX_EVENTS first; the trade ticks (md.tick) and the Redis views (fills, trades,
order history) follow. Failpoints crash the daemon exactly in between, and the restart
must write the missing ticks and views once: none missing, none twice.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
import redis

from stockctl.runtime.process import FAILPOINT_EXIT
from stockctl.wire import names
from stockctl.wire.exchange import decode_record
from stockctl.wire.marketdata import tick_decoder
from tests.support.exchange import Ex
from tests.support.stack import stack_settings, wait_for, wipe_exchange
from tests.support.streams import read_stream

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("point", ["matching.after_events", "matching.after_ticks"])
def test_a_crash_before_the_views_are_written_is_repaired_on_restart(
    point: str, servers, tmp_path: Path, daemons
) -> None:
    # Arrange: alice rests a sell; both users are funded; matching is restarted armed to die
    # at the failpoint on its next batch (bob's crossing buy).
    wipe_exchange(servers)
    settings = stack_settings(
        servers,
        tmp_path / "home",
    )
    procs = {name: daemons(name, settings) for name in ("matching", "auth", "gateway")}
    ex = Ex(settings, procs)
    alice, bob = "alice@example.com", "bob@example.com"
    ex.balances(bob)
    sell = ex.order(alice, market="TATA_INR", side="sell", qty="5", price="100")
    assert sell.status_code == 201, sell.text
    matching = procs["matching"]
    assert matching.terminate() == 0
    matching.env_overrides = {"STOCKCTL_FAILPOINTS": point}
    matching.start()

    # Act: bob's buy trades; matching dies at the failpoint; it is started again, unarmed.
    answer: list[httpx.Response] = []
    buyer = threading.Thread(
        target=lambda: answer.append(ex.order(bob, market="TATA_INR", side="buy", qty="2", price="100"))
    )
    buyer.start()
    assert matching.proc is not None
    assert matching.proc.wait(20) == FAILPOINT_EXIT
    matching.env_overrides = {}
    matching.start()
    buyer.join(30)

    # Assert: the answer came from the stored events, after the restart.
    assert answer and answer[0].status_code == 201 and answer[0].json()["status"] == "filled", answer
    events = [
        e for b in read_stream(settings.nats_url, names.EVENT_STREAM, "ex.event.TATA_INR") for e in decode_record(b)
    ]
    trades = [e for e in events if e.__struct_config__.tag == "trade"]
    assert len(trades) == 1
    # One tick for the one trade, naming its event: none lost, none repeated.
    ticks = [tick_decoder.decode(b) for b in read_stream(settings.nats_url, names.TICK_STREAM, "md.tick.TATA_INR")]
    assert [(t.seq, t.price, t.origin) for t in ticks] == [(1, trades[0].price, f"exchange:{trades[0].seq}")]
    # Each side's fill and the market's trade are in the views exactly once.
    for user in (alice, bob):
        fills = ex.call(user, "GET", "/api/v1/fills").json()
        assert [f["trade_id"] for f in fills] == [trades[0].trade_id], (user, fills)
    r = redis.Redis.from_url(settings.redis_url)
    assert r.llen(names.trades_key("TATA_INR")) == 1
    wait_for(
        lambda: int(r.hget(names.VIEWS_SEQ_KEY, "TATA_INR") or 0) == events[-1].seq,
        10,
        what="the views watermark to reach the last event",
    )
    assert f"failpoint {point}" in matching.log()


def test_a_retried_order_after_a_matching_restart_gets_its_recorded_outcome(servers, tmp_path: Path, daemons) -> None:
    # Arrange: an order with a fixed client id, then matching restarts from a snapshot that
    # covers it (SIGTERM writes one), so its in-memory record of outcomes starts empty.
    wipe_exchange(servers)
    settings = stack_settings(servers, tmp_path / "home")
    procs = {name: daemons(name, settings) for name in ("matching", "auth", "gateway")}
    ex = Ex(settings, procs)
    first = ex.order("kim@example.com", market="TATA_INR", side="buy", qty="2", price="95", client_order_id="k-1")
    assert first.status_code == 201, first.text
    assert procs["matching"].terminate() == 0
    procs["matching"].start()

    # Act: the client retries (its answer was lost, say)
    again = ex.order("kim@example.com", market="TATA_INR", side="buy", qty="2", price="95", client_order_id="k-1")

    # Assert: the same order, not a second one and not "not processed yet"
    assert again.status_code == 201, again.text
    assert again.json()["order_id"] == first.json()["order_id"] and again.json()["status"] == "open"
    opens = ex.call("kim@example.com", "GET", "/api/v1/orders").json()
    assert [o["client_order_id"] for o in opens] == ["k-1"]
