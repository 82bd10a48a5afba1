"""Two matching daemons: one leads the markets, the other stands by (issue #12, item 3).

With 1.5 s leases: the standby takes over when the active daemon is killed, stopped
gracefully (at once: the lease is handed over) or frozen; a frozen leader that resumes in
the middle of a batch is refused by JetStream (its records carry a term that is no longer
the last one) and exits 1 without answering; every acknowledged order is in the record
once, and no event, fill or trade is stored twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import nats
import pytest
import redis

from daemons.matching.leader import Fenced, Leadership, LeaseLost, is_fenced
from stockctl.runtime.leases import open_bucket
from stockctl.wire import names
from stockctl.wire.exchange import Trade, decode_record
from stockctl.wire.streams import ensure_exchange_streams
from tests.support.exchange import Ex
from tests.support.stack import Daemon, stack_settings, wait_for, wipe_exchange
from tests.support.streams import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LEASE_S = 1.5
ALICE, BOB = "alice@example.com", "bob@example.com"


def _role(d: Daemon) -> str | None:
    try:
        return json.loads(d.status_path.read_text())["info"].get("role")
    except (OSError, ValueError, KeyError):
        return None


def _logged_at(d: Daemon, text: str) -> float:
    """When ``d`` last logged a line with ``text`` (seconds since the epoch, from its log)."""
    line = [ln for ln in d.log().splitlines() if text in ln][-1]
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _pair(servers, tmp_path: Path, daemons, renew_s: float = 86_400, **env: str) -> tuple[Ex, Daemon, Daemon]:
    """An exchange whose matching daemon ``a`` leads, ``b`` (another home) standing by."""
    wipe_exchange(servers)
    settings = stack_settings(servers, tmp_path / "a", matching_lease_s=LEASE_S, matching_term_renew_s=renew_s)
    a = daemons("matching", settings)
    if env:
        a.terminate()
        a.env_overrides = env
        a.start()
    b = daemons("matching", stack_settings(servers, tmp_path / "b", matching_lease_s=LEASE_S))
    procs = {"matching": a, **{name: daemons(name, settings) for name in ("auth", "gateway")}}
    wait_for(lambda: _role(a) == "active" and _role(b) == "standby", 20, what="a active, b standing by")
    return Ex(settings, procs), a, b


def _events(ex: Ex) -> list:
    return [
        ev
        for data in read_stream(ex.settings.nats_url, names.EVENT_STREAM, names.EVENT_SUBJECTS)
        for ev in decode_record(data)
    ]


def _assert_recorded_once(ex: Ex, order_ids: list[int]) -> list:
    """Per market, event seqs 1..N with no gap and no repeat; each order accepted once; each
    trade once in the fills views of both sides."""
    events = _events(ex)
    by_market: dict[str, list[int]] = {}
    for ev in events:
        by_market.setdefault(ev.market or names.ACCOUNTS_MARKET, []).append(ev.seq)
    for market, seqs in by_market.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"{market}: {seqs}"
    accepted = Counter(ev.order_id for ev in events if ev.__struct_config__.tag == "accepted")
    assert all(accepted[oid] == 1 for oid in order_ids), accepted
    trades = [ev for ev in events if isinstance(ev, Trade)]
    r = redis.Redis.from_url(ex.settings.redis_url)
    for user in (ALICE, BOB):
        fills = [json.loads(f) for f in r.lrange(names.fills_key(user), 0, -1)]
        ids = [f.get("trade_id") for f in fills]
        assert len(ids) == len(set(ids)), f"{user}'s fills twice: {ids}"
    assert trades, "the crossing orders traded"
    return events


def _cross(ex: Ex, price: str) -> list[int]:
    """alice sells 1 and bob buys 1 at ``price``: both acknowledged; their order ids."""
    sell = ex.order(ALICE, market="TATA_INR", side="sell", qty="1", price=price)
    assert sell.status_code == 201, sell.text
    buy = ex.order(BOB, market="TATA_INR", side="buy", qty="1", price=price)
    assert buy.status_code == 201, buy.text
    return [sell.json()["order_id"], buy.json()["order_id"]]


def test_the_standby_takes_over_from_a_killed_leader_and_from_one_that_stops(servers, tmp_path: Path, daemons) -> None:
    ex, a, b = _pair(servers, tmp_path, daemons)
    ex.balances(ALICE), ex.balances(BOB)
    orders = _cross(ex, "100")

    a.kill()
    killed = time.time()
    wait_for(lambda: _role(b) == "active", 15, what="b to lead after a was killed")
    took = _logged_at(b, "leading group main") - killed
    orders += _cross(ex, "101")
    print(f"takeover after kill -9: {took:.2f} s")
    assert took >= LEASE_S * 0.5, "b led before a's lease could have lapsed"

    # a comes back in its own home: it stands by, and when b stops it leads at once.
    a.start()
    wait_for(lambda: _role(a) == "standby", 15, what="a standing by")
    assert b.terminate() == 0
    wait_for(lambda: _role(a) == "active", 15, what="a to lead after b stopped")
    handed = _logged_at(a, "leading group main") - _logged_at(b, "stopped")
    print(f"takeover after a graceful stop: {handed:.2f} s")
    assert handed < LEASE_S, "a graceful stop hands the lease over, without waiting for it to lapse"
    orders += _cross(ex, "102")
    _assert_recorded_once(ex, orders)


def test_a_frozen_leader_that_resumes_mid_batch_is_refused_and_answers_nothing(
    servers, tmp_path: Path, daemons
) -> None:
    # a freezes (SIGSTOP to itself) after applying its 3rd batch, before storing its events.
    ex, a, b = _pair(servers, tmp_path, daemons, STOCKCTL_FAILPOINTS="matching.before_store@3:stop")
    ex.balances(ALICE), ex.balances(BOB)  # batches 1 and 2: the funding of each
    sell = ex.order(ALICE, market="TATA_INR", side="sell", qty="2", price="100")  # frozen in a's hands
    assert sell.status_code == 201, sell.text  # answered by b, from its replay
    wait_for(lambda: _role(b) == "active", 10, what="b's status to say it leads")  # written once a second
    assert "failpoint matching.before_store (pass 3): stopping" in a.log()
    buy = ex.order(BOB, market="TATA_INR", side="buy", qty="2", price="100")
    assert buy.status_code == 201, buy.text
    before = _events(ex)

    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGCONT)  # a goes on storing the batch it holds, with its old term
    wait_for(lambda: a.proc.poll() is not None, 15, what="a to exit")
    assert a.proc.returncode == 1, a.log()
    assert "stopping without answering" in a.log()
    assert "a record was refused: another matching daemon leads now" in a.log()
    assert _events(ex) == before, "a stored nothing after b took over"
    _assert_recorded_once(ex, [sell.json()["order_id"], buy.json()["order_id"]])


def test_the_leader_writes_its_term_again_on_time_and_goes_on_storing(servers, tmp_path: Path, daemons) -> None:
    ex, a, b = _pair(servers, tmp_path, daemons, renew_s=1.0)
    a_member = json.loads(a.status_path.read_text())["info"]["member"]
    ex.balances(ALICE), ex.balances(BOB)
    orders: list[int] = []
    started = time.monotonic()
    while time.monotonic() - started < 4.5:  # past four renewals, orders in between
        orders += _cross(ex, "100")
        time.sleep(0.3)
    terms = read_stream(ex.settings.nats_url, names.EVENT_STREAM, names.term_subject(names.MATCHING_GROUP))
    members = [json.loads(t)["member"] for t in terms]
    assert len(members) >= 5, members  # the first term and at least four renewals
    assert set(members) == {a_member}, "every term is a's: b stood by throughout"
    assert _role(b) == "standby"
    _assert_recorded_once(ex, orders)


def test_records_with_a_superseded_term_are_refused_by_jetstream(servers) -> None:
    async def run() -> None:
        nc = await nats.connect(servers.nats_url)
        try:
            js = nc.jetstream()
            await ensure_exchange_streams(js)
            kv = await open_bucket(js, LEASE_S, 1, names.MATCHING_LEASES_BUCKET)
            old, new = Leadership(js, kv, "old", LEASE_S), Leadership(js, kv, "new", LEASE_S)
            assert await old.lease.step()
            await old.claim()
            subject = names.event_subject("FENCE_TEST")
            await js.publish(subject, b"[]", headers={"Nats-Msg-Id": "f1", **old.fence()})
            assert not await new.lease.step(), "old holds the lease"
            with pytest.raises(LeaseLost):
                await new.claim()  # a term written without the lease would fence the holder
            await old.lease.release()
            assert await new.lease.step()
            await new.claim()
            assert new.term > old.term
            for msg_id in ("f2", "f1"):  # a new record, and the same record resent
                with pytest.raises(nats.js.errors.APIError) as refused:
                    await js.publish(subject, b"[]", headers={"Nats-Msg-Id": msg_id, **old.fence()})
                assert is_fenced(refused.value)
            await js.publish(subject, b"[]", headers={"Nats-Msg-Id": "f2", **new.fence()})
            with pytest.raises(Fenced):
                await old.renew()  # nor can the old leader write its term again
            term = new.term
            assert await new.renew() > term  # the leader can, and its fence moves with it
            await js.publish(subject, b"[]", headers={"Nats-Msg-Id": "f3", **new.fence()})
        finally:
            await nc.close()

    wipe_exchange(servers)
    asyncio.run(run())
