"""The Python SDK against real daemons: orders rounded to the market, account reads, live
iterators (own order events, the local book, quotes), failover past a dead gateway, the sync
wrapper, and the README's example as written."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal

import pytest

from stockctl.errors import NotFound
from stockctl.instance import infra
from stockctl.instance.registry import write_instance
from stockctl.sdk import Client, OrderRejected, SyncClient
from stockctl.sdk.types import Accepted, Amended, Balance, Cancelled, OwnTrade
from tests.support.cli import PASSWORD
from tests.support.stack import REPO, Daemon, Servers, stack_settings, wipe_exchange

pytestmark = pytest.mark.integration

MKT = "TATA_INR"


@pytest.fixture(scope="module")
def gateway(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A quiet exchange (no market makers) for this module: matching, processor, auth and
    gateway, ``STOCKCTL_HOME`` pointing at it; its REST URL. Each test has its own users."""
    base = tmp_path_factory.mktemp("sdk")
    wipe_exchange(servers)
    settings = stack_settings(servers, base / "home", symbols=["AAPL"], rate=5)
    write_instance(settings)
    started: list[Daemon] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_CONFIG_HOME", str(base / "config"))
        env.setenv("STOCKCTL_HOME", str(settings.home))
        for name in ("STOCKCTL_GATEWAY_URL", "STOCKCTL_WS_URL", "STOCKCTL_AUTH_BASE_URL"):
            env.delenv(name, raising=False)
        try:
            for name in ("matching", "processor", "auth", "gateway"):
                started.append(Daemon(name, settings).start())
            yield settings.gateway_url
        finally:
            for d in started:
                d.kill()


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ok = check()
        if not isinstance(ok, bool):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def test_orders_account_and_live_iterators_through_a_failed_over_client(gateway: str) -> None:
    dead = f"http://127.0.0.1:{infra.free_port()}"  # nothing listens: the client must move on

    async def scenario() -> None:
        async with (
            Client([dead, gateway], email="ada@example.com", password=PASSWORD, register=True) as ada,
            Client(gateway, email="bob@example.com", password=PASSWORD, register=True) as bob,
        ):
            events: list[object] = []
            books: list[tuple[int, list, list]] = []

            async def follow_orders() -> None:
                async for e in ada.orders():
                    events.append(e)

            async def follow_book() -> None:
                async for b in bob.book(MKT):
                    books.append((b.seq, b.levels("bids"), b.levels("asks")))

            tasks = [asyncio.create_task(follow_orders()), asyncio.create_task(follow_book())]
            await until(lambda: bool(books), 10, "the book's snapshot")
            await asyncio.sleep(0.3)  # the orders channel's subscribe answers too

            # Rounded to the market: 5.9 lots at 100.03 is a sell of 5 at 100.05 (up, for a sell).
            rules = await ada.rules(MKT)
            assert (rules.tick, rules.lot) == (Decimal("0.05"), Decimal(1))
            sold = await ada.sell(MKT, Decimal("5.9"), Decimal("100.03"))
            assert sold.status == "open" and sold.order_id is not None
            assert [(o.price, o.qty) for o in await ada.open_orders()] == [("100.05", "5")]
            amended = await ada.amend(sold.order_id, qty=4)
            assert (amended.priority, amended.remaining) == ("kept", "4")
            bought = await bob.buy(MKT, 3, Decimal("100.07"))  # rounds down to 100.05: the ask
            assert bought.status == "filled" and bought.filled_qty == 3
            fills = await ada.fills()
            assert [(f.side, f.qty, f.price, f.liquidity) for f in fills] == [("sell", "3", "100.05", "maker")]
            balances = await ada.balances()
            assert balances["TATA"] == Balance(available="996", reserved="1")
            with pytest.raises(OrderRejected) as refused:
                await ada.place(MKT, "buy", "1", "100.03")  # sent as given: off the tick
            assert refused.value.code == "tick_size"
            cancelled = await ada.cancel(sold.order_id)
            assert [type(e) for e in cancelled.events] == [Cancelled]
            with pytest.raises(NotFound):
                await ada.cancel(sold.order_id)

            # ada's own events, in order; of the trade, only her side.
            mine = lambda: [e for e in events if getattr(e, "order_id", None) == sold.order_id]  # noqa: E731
            await until(lambda: len(mine()) >= 4, 10, "ada's order events")
            assert [type(e) for e in mine()] == [Accepted, Amended, OwnTrade, Cancelled]
            trade = mine()[2]
            assert isinstance(trade, OwnTrade)
            assert (trade.liquidity, trade.side, trade.qty, trade.remaining) == ("maker", "sell", "3", 1)
            assert trade.taker_user is None and trade.taker_order_id is None  # bob is nobody's business

            # The local book went 5 -> 4 -> 1 -> gone at 100.05, and ends equal to the REST book.
            rest = await bob.book_snapshot(MKT)
            await until(lambda: books[-1][0] == rest.seq, 10, "the local book at the REST book's seq")
            asks = [dict(a) for _, _, a in books]
            changes = [a for i, a in enumerate(asks) if i == 0 or a != asks[i - 1]]
            assert changes[-4:] == [{Decimal("100.05"): Decimal(n)} for n in (5, 4, 1)] + [{}], changes
            assert not rest.asks and not books[-1][2]

            # The trade made a quote; the iterator starts with it.
            async def quoted() -> bool:
                return any(q.symbol == MKT for q in await ada.prices())

            await until(quoted, 10, "the trade's quote")

            async def first_quote() -> str:
                async for q in ada.quotes(MKT):
                    return q.price
                return ""

            assert await asyncio.wait_for(first_quote(), 10) == "100.05"
            for t in tasks:
                t.cancel()
            assert ada.orders_placed == 1 and bob.orders_placed == 1  # the refused one does not count

    asyncio.run(asyncio.wait_for(scenario(), 60))

    # The same calls, blocking, with a token.
    with SyncClient(gateway, email="ada@example.com", password=PASSWORD) as ada:
        assert ada.balances()["INR"].reserved == "0"
        placed = ada.buy(MKT, 2, "99.99")  # 99.95 (down, for a buy)
        assert [(o.order_id, o.price) for o in ada.open_orders(MKT)] == [(placed.order_id, "99.95")]
        book = next(iter(ada.book(MKT)))
        assert book.best_bid == (Decimal("99.95"), Decimal(2))
        ada.cancel_all()


def test_get_order_reports_status_filled_quantity_average_price_and_remaining(gateway: str) -> None:
    async def scenario() -> None:
        async with (
            Client(gateway, email="carol@example.com", password=PASSWORD, register=True) as carol,
            Client(gateway, email="dan@example.com", password=PASSWORD, register=True) as dan,
        ):
            await dan.sell("JIO_INR", 2, "100")
            await dan.sell("JIO_INR", 2, "101")
            placed = await carol.buy("JIO_INR", 6, "101")
            assert placed.order_id is not None
            try:
                state = await carol.get_order(placed.order_id)
                assert (state.status, state.qty, state.filled_qty, state.remaining) == (
                    "partially_filled",
                    "6",
                    "4",
                    "2",
                )
                assert Decimal(state.avg_price or "0") == Decimal("100.5")
            finally:
                await carol.cancel(placed.order_id)
            done = await carol.get_order(placed.order_id)
            assert (done.status, done.filled_qty, done.remaining, done.cancelled_qty) == (
                "partially_filled_cancelled",
                "4",
                "0",
                "2",
            )
            with pytest.raises(NotFound):
                await dan.get_order(placed.order_id)  # someone else's order is unknown

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_readme_python_sdk_example_runs_as_written(gateway: str) -> None:
    """The README's "Python SDK" example, run as a script against the instance of STOCKCTL_HOME."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python SDK", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the README's Python SDK section has a python example"
    script = code.group(1).replace("ada@example.com", "readme@example.com")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "open" in out.stdout and "cancelled" in out.stdout, out.stdout


def test_stops_gtd_and_icebergs_through_the_sdk(gateway: str) -> None:
    """The order types of the exchange as typed arguments: a pending stop (amended, then
    cancelled), a good-till-date order that expires by itself, an iceberg the book shows in part."""

    async def scenario() -> None:
        async with Client(gateway, email="erin@example.com", password=PASSWORD, register=True) as erin:
            stop = await erin.buy(MKT, 1, "5000", stop_price="4999")  # far above any trade: it waits
            assert stop.status == "pending" and stop.order_id is not None
            state = await erin.get_order(stop.order_id)
            assert (state.status, state.type, state.stop_price) == ("pending", "stop_limit", "4999.00")
            moved = await erin.amend(stop.order_id, qty=2)
            assert (moved.status, moved.remaining) == ("pending", "2")  # still waiting for its trigger
            assert (await erin.get_order(stop.order_id)).qty == "2"
            await erin.cancel(stop.order_id)
            assert (await erin.get_order(stop.order_id)).status == "cancelled"

            expire_ms = int(time.time() * 1000) + 1500
            gtd = await erin.buy(MKT, 1, "1.50", expire_at=expire_ms)
            assert gtd.status == "open" and gtd.order_id is not None
            ice = await erin.sell(MKT, 10, "4000", display_qty=2)
            assert ice.order_id is not None
            depth = await erin.book_snapshot(MKT)
            assert [lvl.qty for lvl in depth.asks if lvl.price == "4000.00"] == ["2"]  # only what it shows
            mine = {o.order_id: o for o in await erin.open_orders(MKT)}
            assert mine[ice.order_id].remaining == "10"  # its owner sees it whole

            async def expired() -> bool:
                done = await erin.get_order(gtd.order_id)  # type: ignore[arg-type]
                return done.status == "cancelled" and done.reason == "expired"

            await until(expired, 15, "the gtd order to expire in a quiet market")
            await erin.cancel_all(MKT)

    asyncio.run(asyncio.wait_for(scenario(), 40))
