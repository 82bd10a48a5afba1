"""stockctl.bench_matching: the seeded stream and the result document of ``stockctl bench matching``."""

from __future__ import annotations

import sys
from collections import Counter

import pytest

from stockctl.bench.matching import make_stream, run_matching_bench
from stockctl.bench.peers import PEERS, make_peer_stream, run_peers
from stockctl.errors import UsageError
from stockctl.exchange import COMPILED, PURE, engine_build
from stockctl.exchange.engine import Exchange
from stockctl.wire.exchange import Cancel, Place, encode


def test_the_same_seed_gives_the_same_stream_and_another_seed_does_not() -> None:
    a, b, c = make_stream(500, seed=7), make_stream(500, seed=7), make_stream(500, seed=8)

    assert [encode(x) for x in a.commands] == [encode(x) for x in b.commands]
    assert [encode(x) for x in a.commands] != [encode(x) for x in c.commands]


def test_the_stream_mixes_limits_markets_and_cancels_of_live_orders() -> None:
    stream = make_stream(3000, seed=4)
    kinds = Counter(
        "cancel" if isinstance(c, Cancel) else c.type for c in stream.commands if isinstance(c, Cancel | Place)
    )
    ex = Exchange()
    for cmd in stream.funding:
        ex.apply(cmd)

    unknown = 0
    for cmd in stream.commands:
        out = ex.apply(cmd)
        if isinstance(cmd, Cancel):
            unknown += any(getattr(e, "code", "") == "unknown_order" for e in out)

    assert 0.55 < kinds["limit"] / 3000 < 0.65
    assert 0.17 < kinds["market"] / 3000 < 0.23
    assert 0.17 < kinds["cancel"] / 3000 < 0.23
    assert unknown == 0  # every cancel names an order live at that point
    assert ex.audit() == []


def test_the_result_document_has_the_headline_figures() -> None:
    result = run_matching_bench(orders=1500, seed=3, rounds=1)

    doc = result.to_doc()
    assert doc["orders"] == 1500
    assert doc["orders_per_s"] > 0 and doc["cpu_orders_per_s"] > 0
    assert 0 < doc["p50_us"] <= doc["p99_us"] <= doc["max_us"]
    assert doc["trades"] > 0 and doc["events"] > doc["orders"]
    assert doc["target_orders_per_s"] == 500_000


def test_a_stream_needs_at_least_one_order() -> None:
    with pytest.raises(UsageError):
        make_stream(0, seed=1)


def test_the_extended_mix_has_every_new_order_type_and_is_reported_apart() -> None:
    stream = make_stream(4000, seed=4, extended=True)
    ex = Exchange()
    for cmd in stream.funding:
        ex.apply(cmd)
    seen: Counter[str] = Counter()
    for cmd in stream.commands:
        for e in ex.apply(cmd):
            seen[type(e).__name__ + ":" + getattr(e, "reason", getattr(e, "priority", ""))] += 1

    for kind in ("stop", "stop_limit", "amend", "time", "gtd", "iceberg"):
        assert stream.mix[kind] > 0, kind
    assert seen["Triggered:"] > 0 and seen["Cancelled:expired"] > 0
    assert seen["Amended:kept"] > 0 and seen["Amended:lost"] > 0
    assert ex.audit() == []
    doc = run_matching_bench(orders=1500, seed=3, rounds=1).to_doc()
    assert doc["extended"]["orders"] == 1500 and doc["extended"]["orders_per_s"] > 0
    assert doc["extended"]["mix"]["amend"] > 0 and "amend" not in doc["mix"]


def test_the_result_says_which_build_of_the_engine_ran() -> None:
    doc = run_matching_bench(orders=500, seed=3, rounds=1).to_doc()

    assert doc["engine"] == engine_build() and doc["engine"] in (COMPILED, PURE)
    assert doc["engine_note"] and doc["peers"] == {}


def test_the_peers_fill_the_peer_stream_as_ours_does_and_are_timed_beside_it() -> None:
    pytest.importorskip("liquibook")
    pytest.importorskip("lightmatchingengine")
    stream = make_peer_stream(3000, seed=5)
    assert len(stream.fills) > 300  # the stream trades, so the comparison compares something

    doc = run_peers(3000, seed=5, rounds=1).to_doc()

    runs = {(r["name"], r["build"]): r for r in doc["runs"]}
    assert runs[("stockctl", engine_build())]["orders_per_s"] > 0
    for name in PEERS:
        (run,) = [r for r in doc["runs"] if r["name"] == name]
        assert run["importable"] and run["same_fills"] is True, run
        assert run["orders_per_s"] > 0 and f"{len(stream.fills):,} fills" in run["note"]
    if engine_build() == COMPILED:  # the other build, in a child process
        assert runs[("stockctl", PURE)]["orders_per_s"] > 0
        assert doc["vs_liquibook"] is not None and doc["vs_liquibook"] > 0


def test_a_peer_that_is_not_importable_is_reported_and_not_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PEERS:
        monkeypatch.setitem(sys.modules, name, None)  # what `import name` does when it is not installed

    doc = run_peers(500, seed=5, rounds=1).to_doc()

    for name in PEERS:
        (run,) = [r for r in doc["runs"] if r["name"] == name]
        assert run["importable"] is False and run["orders_per_s"] == 0 and run["same_fills"] is None
        assert "pip install 'stockctl[peers]'" in run["note"]
    assert doc["vs_liquibook"] is None and doc["target_met"] is None
