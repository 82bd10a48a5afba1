"""A crash of matching between storing events and writing what derives from them.

Events go to EX_EVENTS first, one record per market per batch of commands; the trade ticks
(md.tick), the Redis views (fills, trades, order history) and the replies follow. Failpoints
crash the daemon exactly in between, and the restart must write the missing ticks, views and
replies once: none missing, none twice, for a one-command batch and for a batch of many.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import msgspec
import nats
import pytest
import redis
import redis.asyncio as aioredis
from nats.aio.msg import Msg

from daemons.matching.views import RedisViews
from stockctl.exchange.engine import Exchange
from stockctl.runtime.process import FAILPOINT_EXIT
from stockctl.wire import names
from stockctl.wire.exchange import (
    Accepted,
    Cancel,
    Command,
    Event,
    Fund,
    Place,
    Trade,
    decode_record,
    encode_record,
    event_decoder,
    split_record,
)
from stockctl.wire.exchange import encode as ex_encode
from stockctl.wire.marketdata import tick_decoder
from stockctl.wire.streams import ensure_exchange_streams
from tests.support.exchange import Ex
from tests.support.stack import stack_settings, wait_for, wipe_exchange
from tests.support.streams import read_stream

pytestmark = pytest.mark.integration

trade_decoder = msgspec.json.Decoder(Trade)


def event_market(ev: object) -> str:
    return getattr(ev, "market", "") or names.ACCOUNTS_MARKET


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
    ticks = [
        tick_decoder.decode(b)
        for b in read_stream(settings.nats_url, names.TICK_STREAM, names.tick_subject("TATA_INR", settings.partitions))
    ]
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


def _backlog(ts: int) -> list[Command]:
    """Funding, then resting sells and crossing buys in both markets: trades, accepts, a cancel."""
    cmds: list[Command] = [
        Fund(user, "fund", {"INR": "10000000", "TATA": "1000", "JIO": "1000"}, ts) for user in ("ann", "ben")
    ]
    for i in range(20):
        for market in ("TATA_INR", "JIO_INR"):
            cmds.append(Place("ann", f"s-{market}-{i}", market, "sell", "limit", "3", ts, price=f"{100 + i % 4}"))
            cmds.append(Place("ben", f"b-{market}-{i}", market, "buy", "limit", "2", ts, price=f"{101 + i % 3}"))
    cmds.append(Cancel("ann", "c-1", "TATA_INR", 1, ts))
    return cmds


@pytest.mark.parametrize("point", ["matching.after_events", "matching.after_ticks", "matching.before_replies"])
def test_a_crash_after_a_batch_is_stored_loses_nothing_and_doubles_nothing(
    point: str, servers, tmp_path: Path, daemons
) -> None:
    # Arrange: a backlog of commands in two markets waits in EX_ORDERS, each naming a reply
    # inbox, so matching's first batch holds all of them: one record per market. Matching
    # starts armed to die at the failpoint, right after that batch's records are stored.
    wipe_exchange(servers)
    settings = stack_settings(servers, tmp_path / "home")
    commands = _backlog(time.time_ns())
    matching = daemons("matching", settings, start=False)
    matching.env_overrides = {"STOCKCTL_FAILPOINTS": point}

    async def scenario() -> tuple[int, dict[int, list[bytes]]]:
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        await ensure_exchange_streams(js)
        replies: dict[int, list[bytes]] = {}

        async def on_reply(msg: Msg) -> None:
            replies.setdefault(int(msg.subject.rsplit(".", 1)[1]), []).append(msg.data)

        await nc.subscribe("_INBOX.batch.>", cb=on_reply)
        for i, cmd in enumerate(commands):
            market = getattr(cmd, "market", "") or names.ACCOUNTS_MARKET
            headers = {"Nats-Msg-Id": f"t:{i}", names.REPLY_HEADER: f"_INBOX.batch.{i}"}
            await js.publish(names.order_subject(market), ex_encode(cmd), headers=headers)
        # Act: matching dies at the failpoint on its first batch; it is started again, unarmed.
        await asyncio.to_thread(matching.start, False)
        assert matching.proc is not None
        assert await asyncio.to_thread(matching.proc.wait, 30) == FAILPOINT_EXIT
        before_restart = len(replies)
        matching.env_overrides = {}
        await asyncio.to_thread(matching.start)
        for _ in range(300):
            if len(replies) == len(commands):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # a reply sent twice would arrive by now
        await nc.close()
        return before_restart, replies

    before_restart, replies = asyncio.run(scenario())

    # Assert: the crash came after the records were stored and before any reply was sent ...
    assert before_restart == 0
    assert f"failpoint {point}" in matching.log()
    # ... the stored events are exactly what a fresh engine makes of the commands, each once,
    # in records that each hold many events (the batch), consecutive per market ...
    engine = Exchange()
    expected = {i: [ex_encode(ev) for ev in engine.apply(cmd)] for i, cmd in enumerate(commands)}
    expected_by_market: dict[str, list[bytes]] = {}
    for encoded in expected.values():
        for data in encoded:
            expected_by_market.setdefault(event_market(event_decoder.decode(data)), []).append(data)
    r = redis.Redis.from_url(settings.redis_url)
    trades = 0
    for market, want in expected_by_market.items():
        records = read_stream(settings.nats_url, names.EVENT_STREAM, names.event_subject(market))
        stored = [data for record in records for data in split_record(record)]
        assert stored == want, market
        seqs = [event_decoder.decode(d).seq for d in stored]
        assert seqs == list(range(1, len(seqs) + 1)), market
        if market != names.ACCOUNTS_MARKET:
            assert len(records) < len(stored) / 2, (market, len(records), len(stored))
            market_trades = [e for e in map(event_decoder.decode, stored) if isinstance(e, Trade)]
            trades += len(market_trades)
            # ... one tick per trade, naming its event; the views hold each trade once ...
            ticks = [
                tick_decoder.decode(b)
                for b in read_stream(
                    settings.nats_url, names.TICK_STREAM, names.tick_subject(market, settings.partitions)
                )
            ]
            assert [t.origin for t in ticks] == [f"exchange:{e.seq}" for e in market_trades], market
            listed = [trade_decoder.decode(b).trade_id for b in r.lrange(names.trades_key(market), 0, -1)]
            assert listed == [e.trade_id for e in market_trades], market
            wait_for(
                lambda m=market, last=seqs[-1], r=r: int(r.hget(names.VIEWS_SEQ_KEY, m) or 0) == last,
                10,
                what=f"the {market} views watermark to reach its last event",
            )
    assert trades > 10
    # ... and every command got one reply, its own events, after the restart.
    assert {i: got for i, got in replies.items()} == {i: [encode_record(want)] for i, want in expected.items()}


def test_views_of_a_batch_written_twice_are_written_once(servers) -> None:
    # Arrange: a batch's events (an accept and a trade) for the views, as matching writes them.
    wipe_exchange(servers)
    accepted = Accepted(1, 1, "TATA_INR", "ann", 1, "s-1", "sell", "limit", "gtc", False, "3", "100")
    trade = Trade(2, 1, "TATA_INR", 7, "100", "2", "buy", "ann", 1, "s-1", "1", "0", "ben", 2, "b-1", "0", "0")
    events: list[tuple[Event, bytes]] = [(ev, ex_encode(ev)) for ev in (accepted, trade)]

    async def scenario() -> None:
        r = aioredis.Redis.from_url(servers.redis_url)
        views = RedisViews(r, asyncio.Event())
        # Act: the same batch twice, as a resend after a lost reply would
        await views.record(events)
        views.viewed.clear()
        await views.record(events)
        await r.aclose()

    asyncio.run(scenario())

    # Assert: each list holds each event once; the watermark is the batch's last seq.
    r = redis.Redis.from_url(servers.redis_url)
    assert r.lrange(names.trades_key("TATA_INR"), 0, -1) == [ex_encode(trade)]
    assert r.lrange(names.fills_key("ann"), 0, -1) == [ex_encode(trade)]
    assert r.lrange(names.fills_key("ben"), 0, -1) == [ex_encode(trade)]
    assert r.lrange(names.orders_key("ann"), 0, -1) == [ex_encode(accepted)]
    assert r.hget(names.VIEWS_SEQ_KEY, "TATA_INR") == b"2"
