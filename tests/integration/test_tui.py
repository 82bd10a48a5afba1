"""The trading terminal: Pilot against real daemons, and a frozen data set for the rest."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import TabbedContent
from textual.worker import WorkerFailed

from stockctl.instance.registry import write_instance
from stockctl.settings import Settings
from tests.support.cli import PASSWORD
from tests.support.gateway import GatewayStack
from tests.support.pilot import until
from tests.support.stack import stack_settings
from tui.app import StockApp, make_app
from tui.demo import demo_data
from tui.router import FrameRouter
from tui.screens.login import LoginScreen
from tui.widgets.order_entry import OrderEntry, validate_order
from tui.widgets.price_chart import PriceChart
from tui.widgets.table import Table
from tui.widgets.ticker_board import TickerBoard


@pytest.fixture
def stack(clean, tmp_path: Path, daemons) -> GatewayStack:
    """processor, publisher (5 ticks/s, seeded), auth and gateway on free ports; instance.json written.

    Two of its symbols are real tickers with a ``.`` and a ``/``, which subjects, Redis keys,
    WebSocket channels and REST paths must all carry."""
    settings = stack_settings(
        clean, tmp_path / "home", rate=5, seed=3, sma_fast=3, sma_slow=6, symbols="AAPL,BRK.B,BTC/USDT,MSFT"
    )
    write_instance(settings)
    started = {name: daemons(name, settings) for name in ("processor", "publisher", "auth", "gateway")}
    return GatewayStack(settings, started)


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stored logins go to a private config dir; times show in UTC (snapshots)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("STOCKCTL_GATEWAY_URL", raising=False)
    monkeypatch.delenv("STOCKCTL_WS_URL", raising=False)
    monkeypatch.delenv("STOCKCTL_AUTH_BASE_URL", raising=False)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def board(app: StockApp) -> TickerBoard:
    return app.panel(TickerBoard)


def cell(app: StockApp, symbol: str, column: str) -> str:
    return str(board(app).table.get_cell(symbol, column))


# --- against real daemons -------------------------------------------------------------------


async def test_login_then_live_board_chart_and_order_validation(stack: GatewayStack) -> None:
    """One stack for the whole first session: register in the app, quotes, chart, a bad order."""
    from stockctl.client.credentials import load

    conf = Path(os.environ["XDG_CONFIG_HOME"]) / "stockctl"
    conf.mkdir(parents=True)
    (conf / "watchlists.toml").write_text('crypto = ["btc/usdt"]\n')
    app = make_app(stack.settings)

    async with app.run_test(size=(160, 48)) as pilot:
        # No stored login: the login screen; a refused registration is a readable message.
        await until(
            pilot, lambda: isinstance(app.screen, LoginScreen) and app.screen.query("#login-email"), what="login"
        )
        await pilot.click("#login-email")
        await pilot.press("n", "e", "w")
        app.screen.query_one("#login-email").value = "new@example.com"
        app.screen.query_one("#login-password").value = "short"
        await pilot.click("#register-button")
        status = app.screen.query_one("#login-status")
        await until(pilot, lambda: status.has_class("error"), what="registration refused")
        assert "password" in str(status.render()).lower()
        app.screen.query_one("#login-password").value = PASSWORD
        # Click Register again. Textual ignores a click while the button still shows its 0.2 s
        # press effect (class -active); a refusal can come back faster than that, so wait it out.
        button = app.screen.query_one("#register-button")
        await until(pilot, lambda: not button.has_class("-active"), what="the press effect to end")
        await pilot.click("#register-button")
        await until(pilot, lambda: not isinstance(app.screen, LoginScreen), what="login screen dismissed")
        session = load(stack.settings)
        assert session is not None and session.email == "new@example.com"

        # Live quotes reach the board, drawn in place.
        await until(pilot, lambda: app.connection == "live", what="live feed")
        quotes = board(app).quotes
        await until(pilot, lambda: {"AAPL", "BRK.B", "BTC/USDT", "MSFT"} <= set(quotes), what="quotes on the board")
        assert board(app).visible_symbols() == ["AAPL", "BRK.B", "BTC/USDT", "MSFT"]
        first = board(app).quotes["AAPL"].seq
        await until(pilot, lambda: board(app).quotes["AAPL"].seq > first + 2, what="live AAPL updates")
        await until(pilot, lambda: cell(app, "AAPL", "last") == board(app).quotes["AAPL"].price, 2, "drawn")
        assert "● live" in app.sub_title and "new@example.com" in app.sub_title

        # Selecting a symbol charts it, and live ticks extend the chart.
        chart = app.panel(PriceChart)
        await until(pilot, lambda: chart.symbol == "AAPL" and len(chart.prices) > 1, what="AAPL chart")
        board(app).table.focus()
        await pilot.press("down")
        await until(pilot, lambda: chart.symbol == "BRK.B" and len(chart.prices) > 1, what="BRK.B chart")
        # The chart keeps a bounded window, which may already be full: count live ticks by seq.
        loaded = chart.last_seq
        await until(pilot, lambda: chart.last_seq > loaded, what="live points on the chart")
        assert "BRK.B" in str(chart.border_title)
        await until(pilot, lambda: cell(app, "BTC/USDT", "last") == quotes["BTC/USDT"].price, 2, "BTC/USDT drawn")
        await until(pilot, lambda: quotes["BTC/USDT"].seq >= 20, what="a BTC/USDT history to load")
        await pilot.press("down")
        # 15 points within a second are its loaded history: live ticks (5/s) alone bring fewer
        await until(pilot, lambda: chart.symbol == "BTC/USDT" and len(chart.prices) >= 15, 1.0, "BTC/USDT history")
        assert "BTC/USDT" in str(chart.border_title)
        await pilot.press("w")  # the watchlist file spells it in lower case
        assert board(app).visible_symbols() == ["BTC/USDT"]
        assert board(app).border_title == "Tickers · crypto"

        # A bad quantity: a readable error as you type, and ctrl+s sends nothing.
        await pilot.press("4")
        entry = app.panel(OrderEntry)
        entry.query_one("#entry-qty").focus()
        await pilot.press("1", "x", "y")
        assert "quantity: '1xy' is not a positive number" in str(entry.query_one("#entry-status").render())
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert "sending" not in str(entry.query_one("#entry-result").render())
        assert app.is_running


async def test_gateway_restart_shows_disconnected_then_recovers(stack: GatewayStack) -> None:
    app = make_app(stack.settings, token=stack.token("tui@example.com"))

    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.connection == "live" and "AAPL" in board(app).quotes, what="live feed")
        gateway = stack.daemons["gateway"]
        stopping = asyncio.create_task(asyncio.to_thread(gateway.terminate))  # the app keeps running meanwhile
        await until(pilot, lambda: app.connection == "disconnected", what="disconnected state")
        assert "disconnected" in app.sub_title
        assert app.main_screen.has_class("disconnected")
        before = board(app).quotes["AAPL"].seq
        await stopping
        await asyncio.to_thread(gateway.start)
        await until(pilot, lambda: app.connection == "live", 20, "reconnected")
        await until(pilot, lambda: board(app).quotes["AAPL"].seq > before + 2, what="quotes after resubscribing")
        assert "● live" in app.sub_title


async def test_no_running_instance_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "nowhere")
    app = make_app(settings)

    async with app.run_test(size=(80, 24)) as pilot:
        await until(
            pilot, lambda: isinstance(app.screen, LoginScreen) and app.screen.query("#login-status"), what="login"
        )
        assert "not running" in str(app.screen.query_one("#login-status").render())
        assert app.connection == "logged out"


# --- frozen data ----------------------------------------------------------------------------


def frozen_app(tmp_path: Path) -> StockApp:
    return make_app(Settings(home=tmp_path / "home", sma_fast=20, sma_slow=50), data=demo_data())


async def test_frozen_board_sorts_filters_and_marks_stale(tmp_path: Path) -> None:
    app = frozen_app(tmp_path)

    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: len(board(app).visible_symbols()) == 4, what="board")
        assert board(app).visible_symbols() == ["AAPL", "JIO_INR", "MSFT", "TATA_INR"]
        await pilot.press("s")  # change % descending
        pcts = [float(board(app).quotes[s].change_pct) for s in board(app).visible_symbols()]
        assert pcts == sorted(pcts, reverse=True)
        await pilot.press("slash", "i", "n", "r")
        assert board(app).visible_symbols() == ["JIO_INR", "TATA_INR"]
        await pilot.press("escape")
        assert len(board(app).visible_symbols()) == 4
        await until(pilot, lambda: "MSFT" in board(app).stale, 3, "stale MSFT")
        assert cell(app, "MSFT", "age") == "40s"
        assert "AAPL" not in board(app).stale


async def test_frozen_order_entry_checks_tick_and_lot_and_submits(tmp_path: Path) -> None:
    data = demo_data()
    app = make_app(Settings(home=tmp_path / "home"), data=data)

    async with app.run_test(size=(160, 48)) as pilot:
        entry = app.panel(OrderEntry)
        await until(pilot, lambda: bool(entry.specs), what="market specs")
        await pilot.press("4")
        entry.query_one("#entry-qty").focus()
        await pilot.press("1", ".", "5", "tab")
        await pilot.press(*"100.03")
        status = str(entry.query_one("#entry-status").render())
        assert "lot size 1" in status and "tick size 0.05" in status
        entry.query_one("#entry-qty").value = "2"
        entry.query_one("#entry-price").value = "100.05"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: bool(data.placed), 3, "order placed")
        assert data.placed[-1] == {
            "market": "JIO_INR",
            "side": "buy",
            "type": "limit",
            "qty": "2",
            "price": "100.05",
            "tif": "gtc",
        }
        await until(pilot, lambda: "order 1: open" in str(entry.query_one("#entry-result").render()), 3, "result")


async def test_frozen_order_entry_takes_stops_gtd_icebergs_and_amends_the_selected_order(tmp_path: Path) -> None:
    data = demo_data()
    app = make_app(Settings(home=tmp_path / "home"), data=data)

    async with app.run_test(size=(160, 48)) as pilot:
        from tui.widgets.open_orders import OpenOrders

        entry, orders = app.panel(OrderEntry), app.panel(OpenOrders)
        await until(pilot, lambda: bool(entry.specs) and orders.row_count == 2, what="specs and open orders")
        await pilot.press("4")
        entry.query_one("#entry-type").value = "stop_limit"
        entry.query_one("#entry-qty").value = "3"
        entry.query_one("#entry-price").value = "101"
        entry.query_one("#entry-stop").value = "100.01"
        await pilot.pause()
        assert "stop price: not a multiple of the tick size 0.05" in str(entry.query_one("#entry-status").render())
        entry.query_one("#entry-stop").value = "100.50"
        entry.query_one("#entry-tif").value = "gtd"
        entry.query_one("#entry-expire").value = "1893596645000"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: bool(data.placed), 3, "stop-limit placed")
        assert data.placed[-1] | {} == {
            "market": "JIO_INR", "side": "buy", "type": "stop_limit", "qty": "3", "price": "101",
            "tif": "gtd", "stop_price": "100.50", "expire_at": 1893596645000,
        }  # fmt: skip

        # Edit the selected open order: e loads it into the form, ctrl+s sends only what changed.
        orders.focus()
        first = orders.selected()
        assert first is not None
        await pilot.press("e")
        await until(pilot, lambda: entry.amending is not None, 3, "amend mode")
        assert entry.query_one("#entry-qty").value == first["qty"]
        entry.query_one("#entry-qty").value = "1"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: bool(data.amended), 3, "amend sent")
        assert data.amended[-1] == {"order_id": first["order_id"], "price": None, "qty": "1", "market": first["market"]}
        assert entry.amending is None
        await until(pilot, lambda: "amended" in str(entry.query_one("#entry-result").render()), 3, "amend result")
        # esc (in the form) leaves amend mode without sending anything.
        orders.focus()
        await pilot.press("e")
        await until(pilot, lambda: entry.amending is not None, 3, "amend mode again")
        entry.query_one("#entry-qty").focus()
        await pilot.press("escape")
        await until(pilot, lambda: entry.amending is None, 3, "amend mode left")
        assert len(data.amended) == 1


async def test_frozen_worker_errors_are_notices_and_a_bug_stops_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers never catch: the app's one Worker.StateChanged handler shows a refusal where the
    user looks (a notice, the order form's result line); any other exception is a bug that stops the app."""
    from stockctl.errors import StockctlError
    from tui.source import FrozenApi
    from tui.widgets.open_orders import OpenOrders

    def refuse(self: FrozenApi, *args: object, **kwargs: object) -> dict[str, object]:
        raise StockctlError("market closed")

    monkeypatch.setattr(FrozenApi, "place", refuse)
    monkeypatch.setattr(FrozenApi, "cancel", refuse)
    app = frozen_app(tmp_path)

    def notices() -> list[tuple[str, str]]:
        return [(n.message, n.severity) for n in app._notifications]

    with pytest.raises(WorkerFailed) as failed:
        async with app.run_test(size=(160, 48)) as pilot:
            entry, orders = app.panel(OrderEntry), app.panel(OpenOrders)
            await until(pilot, lambda: bool(entry.specs) and orders.row_count == 2, what="specs and open orders")
            await pilot.press("4")
            entry.query_one("#entry-qty").value = "2"
            entry.query_one("#entry-price").value = "100.05"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: ("market closed", "error") in notices(), 3, "refused order notice")
            assert "market closed" in str(entry.query_one("#entry-result").render())
            order_id = orders.selected()["order_id"]  # type: ignore[index]
            await pilot.press("x")
            await until(pilot, lambda: (f"cancel {order_id}: market closed", "error") in notices(), 3, "cancel")
            assert app.is_running

            def bug(self: FrozenApi, *args: object) -> list[object]:
                raise ZeroDivisionError("a bug")

            monkeypatch.setattr(FrozenApi, "history", bug)
            await pilot.press("r")
            await until(pilot, lambda: not app.is_running, 3, "the app stops on a bug")
    assert isinstance(failed.value.error, ZeroDivisionError)


async def test_frozen_panels_and_palette(tmp_path: Path) -> None:
    app = frozen_app(tmp_path)

    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.connection == "frozen", what="frozen feed")
        await until(pilot, lambda: app.panel(PriceChart).markers(), what="chart markers")
        from tui.widgets.balances_table import BalancesTable
        from tui.widgets.open_orders import OpenOrders
        from tui.widgets.order_book import OrderBook

        assert app.panel(OpenOrders).row_count == 2
        await until(pilot, lambda: app.panel(BalancesTable).row_count == 3, 3, "balances")
        assert app.panel(OrderBook).books["JIO_INR"][0][0] == ["251.35", "220"]
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Filter", "Sort", "Submit order", "Cancel order", "Theme", "Range+", "Interval"} <= titles
        assert app.theme == "textual-dark"  # the default of [tui] theme
        await pilot.press("i")
        await until(pilot, lambda: app.panel(PriceChart).mode == "1s", 3, "1s candles")


async def test_frozen_ladder_shows_only_an_icebergs_displayed_part_its_owner_the_whole(tmp_path: Path) -> None:
    """The book and open orders the gateway would serve, taken from the engine: an iceberg of 100
    showing 10 at 252.50 beside a plain 5 at 252.55."""
    import io

    import msgspec
    from rich.console import Console

    from daemons.matching.book_feed import BookFeed
    from stockctl.exchange.engine import Exchange
    from stockctl.wire.exchange import Fund, Place
    from tui.widgets.open_orders import OpenOrders
    from tui.widgets.order_book import OrderBook

    ex = Exchange()
    ex.apply(Fund("me", "f", {"JIO": "1000"}, 0))
    ex.apply(Place("me", "ice", "JIO_INR", "sell", "limit", "100", 1, price="252.50", display_qty="10"))
    ex.apply(Place("me", "plain", "JIO_INR", "sell", "limit", "5", 1, price="252.55"))
    data = demo_data()
    data.books["JIO_INR"] = BookFeed(None).snapshot(ex, "JIO_INR")  # type: ignore[arg-type]
    data.orders = msgspec.to_builtins(ex.open_orders("me"))
    app = make_app(Settings(home=tmp_path / "home"), data=data)

    async with app.run_test(size=(160, 48)) as pilot:
        book, orders = app.panel(OrderBook), app.panel(OpenOrders)
        await pilot.press("4")  # JIO_INR, the fourth symbol on the board
        await until(pilot, lambda: book.market == "JIO_INR" and orders.row_count == 2, 3, "book and orders")
        bids, asks, _, _ = book.books["JIO_INR"]
        assert (bids, asks) == ([], [["252.50", "10"], ["252.55", "5"]])
        console = Console(width=80, file=io.StringIO(), record=True)
        console.print(book.render())
        best = next(line.split() for line in console.export_text().splitlines() if "252.50" in line)
        assert best[-1] == "10", best  # the best ask's size, as drawn
        iceberg = orders.orders[1]
        assert (iceberg["qty"], iceberg["remaining"], iceberg["visible"]) == ("100", "100", "10")


def test_snapshot_80x24(snapshot, tmp_path: Path) -> None:
    snapshot(frozen_app(tmp_path), (80, 24), _settle)


def test_snapshot_160x48(snapshot, tmp_path: Path) -> None:
    snapshot(frozen_app(tmp_path), (160, 48), _settle)


async def _settle(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, StockApp)
    chart = app.panel(PriceChart)
    await until(pilot, lambda: app.connection == "frozen" and chart.prices, what="frozen data")
    await until(pilot, lambda: chart.settled and chart.drawn is not None, what="the chart drawn")


# --- pieces ---------------------------------------------------------------------------------


async def test_a_table_column_fits_a_wider_cell_before_the_next_paint() -> None:
    # Textual widens auto-width columns on the next idle and repaints then; a lost repaint left
    # the signals and trade tables drawn at their header widths ("251.4" for "251.40").
    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield Table()

    app = One()
    async with app.run_test(size=(80, 10)):
        table = app.query_one(Table)
        table.add_column("sym", key="sym")
        table.add_column("px", key="px")
        table.add_row("TATA_INR", "1", key="a")
        assert [c.content_width for c in table.ordered_columns] == [8, 2]  # before any idle
        table.update_cell("a", "px", "1234.50")
        assert table.columns[table.ordered_columns[1].key].content_width == 7


def test_book_deltas_update_the_ladder() -> None:
    router = FrameRouter()
    router.route("snapshot", "book:X_INR", b'{"seq":1,"bids":[["10.00","5",1]],"asks":[["10.10","3",1]]}')
    (msg,) = router.route(
        "book", "book:X_INR", b'{"type":"delta","seq":2,"bids":[["10.05","2"],["10.00","0"]],"asks":[]}'
    )
    assert msg.bids == [["10.05", "2"]] and msg.asks == [["10.10", "3"]] and msg.seq == 2
    assert router.route("quotes:AAPL", "quotes:AAPL", b"not json") == []


def test_order_validation() -> None:
    spec = {"tick_size": "0.05", "lot_size": "1", "min_qty": "1", "max_qty": "100", "max_price": "1000"}
    order, errors = validate_order("sell", "X_INR", "market", "5", "", "gtc", spec)
    assert errors == [] and order == {"market": "X_INR", "side": "sell", "type": "market", "qty": "5", "tif": "ioc"}
    _, errors = validate_order("buy", "X_INR", "limit", "500", "2000", "gtc", spec)
    assert errors == ["quantity: above the maximum 100", "price: above the maximum 1000"]


def test_tui_web_serve_builds_a_loopback_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tui import web

    served = {}
    monkeypatch.setenv("STOCKCTL_HOME", "/elsewhere")
    monkeypatch.setattr(
        web.Server, "serve", lambda self, debug=False: served.update(cmd=self.command, url=self.public_url)
    )
    url = web.serve(Settings(home=tmp_path / "h"), port=8123)
    # The printed URL carries the run's secret; the server's own public URL is the bare one.
    assert served["url"] == "http://127.0.0.1:8123"
    assert re.fullmatch(r"http://127\.0\.0\.1:8123/\?token=[A-Za-z0-9_-]{40,}", url), url
    assert served["cmd"].startswith("exec ") and served["cmd"].endswith("-m tui")
    assert os.environ.get("STOCKCTL_HOME") == str(tmp_path / "h")


# --- positions ------------------------------------------------------------------------------


def _fill(side: str, qty: str, price: str, fee: str = "0", ts: int = 0, trade_id: int = 0, market: str = "X_INR"):
    return {
        "ts": ts,
        "market": market,
        "side": side,
        "qty": qty,
        "price": price,
        "fee": fee,
        "liquidity": "taker",
        "order_id": trade_id,
        "trade_id": trade_id,
    }


def test_positions_buys_then_partial_sell_average_cost_and_fees() -> None:
    from decimal import Decimal as D

    from tui.positions import positions_from_fills

    fills = [
        _fill("buy", "10", "100", "1", ts=1, trade_id=1),
        _fill("buy", "10", "110", "1", ts=2, trade_id=2),
        _fill("sell", "5", "120", "0.50", ts=3, trade_id=3),
    ]

    pos = positions_from_fills(fills)["X_INR"]

    assert pos.qty == D("15")
    assert pos.avg_cost == D("105")
    assert pos.realised == D("72.50")  # 5 x (120 - 105) - (1 + 1 + 0.50)
    assert pos.fees == D("2.50")
    assert pos.unrealised(D("100")) == D("-75")  # 15 x (100 - 105)
    assert pos.unrealised(None) is None


def test_positions_flip_long_to_short_then_close() -> None:
    from decimal import Decimal as D

    from tui.positions import positions_from_fills

    opened = [_fill("buy", "10", "50", ts=1, trade_id=1), _fill("sell", "15", "60", "0.90", ts=2, trade_id=2)]
    closed = [*opened, _fill("buy", "5", "58", ts=3, trade_id=3)]

    short = positions_from_fills(opened)["X_INR"]
    flat = positions_from_fills(closed)["X_INR"]

    assert (short.qty, short.avg_cost, short.realised) == (D("-5"), D("60"), D("99.10"))  # 10 x 10 - 0.90
    assert short.unrealised(D("55")) == D("25")  # short 5 from 60, now 55
    assert (flat.qty, flat.avg_cost, flat.realised) == (D("0"), D("0"), D("109.10"))  # + 5 x (60 - 58)
    assert flat.unrealised(D("1")) == D("0")


def test_positions_short_average_exact_close_duplicates_and_order() -> None:
    from decimal import Decimal as D

    from tui.positions import positions_from_fills

    third = [
        _fill("buy", "1", "1", ts=1, trade_id=1, market="A"),
        _fill("buy", "2", "2", ts=2, trade_id=2, market="A"),
        _fill("sell", "3", "2", ts=3, trade_id=3, market="A"),  # average 5/3: closing all is still exact
    ]
    short = [
        _fill("sell", "4", "12", ts=6, trade_id=5, market="B"),
        _fill("buy", "2", "9", "0.01", ts=7, trade_id=6, market="B"),
        _fill("sell", "4", "10", ts=5, trade_id=4, market="B"),  # arrives late, happened first
    ]

    got = positions_from_fills([*third, *short, short[0], third[1]])  # REST + live overlap

    assert got["A"].qty == 0 and got["A"].realised == D("1")  # 6 - 5
    assert got["B"].qty == D("-6") and got["B"].avg_cost == D("11")
    assert got["B"].realised == D("3.99")  # 2 x (11 - 9) - 0.01
    assert got["B"].fills == 3


async def test_frozen_positions_panel_from_fills_and_live_trades(tmp_path: Path) -> None:
    from tui.messages import OrderEventArrived, QuoteArrived
    from tui.widgets.positions import PositionsTable

    app = frozen_app(tmp_path)

    async with app.run_test(size=(160, 48)) as pilot:
        table = app.panel(PositionsTable)
        await until(pilot, lambda: "JIO_INR" in table.rows, what="positions from REST fills")
        await pilot.press("8")
        assert app.panel(TabbedContent).active == "tab-positions"
        # The demo fill: sold 10 JIO_INR at 252.50, fee 2.52.
        assert [str(c) for c in table.get_row("JIO_INR")[:3]] == ["JIO_INR", "-10", "252.5000"]
        assert str(table.get_cell("JIO_INR", "realised")) == "-2.52"
        app.user = "me@example.com"
        app.post_message(
            OrderEventArrived(
                {
                    "event": "trade",
                    "market": "JIO_INR",
                    "trade_id": 99,
                    "ts": 1,
                    "price": "250.00",
                    "qty": "4",
                    "taker_side": "buy",
                    "taker_user": "me@example.com",
                    "taker_fee": "1.00",
                    "taker_order_id": 50,
                    "maker_user": "other@example.com",
                }
            )
        )
        app.post_message(QuoteArrived(_quote("JIO_INR", "251.00")))
        await until(pilot, lambda: str(table.get_cell("JIO_INR", "qty")) == "-6", 3, "live fill")
        await until(pilot, lambda: str(table.get_cell("JIO_INR", "last")) == "251.00", 3, "last price")
        assert str(table.get_cell("JIO_INR", "realised")) == "+6.48"  # 4 x 2.50 - 2.52 - 1.00
        assert str(table.get_cell("JIO_INR", "unrealised")) == "+9.00"  # short 6 from 252.50 at 251


def _quote(symbol: str, price: str, seq: int = 10_000):
    from stockctl.wire.marketdata import Quote

    return Quote(
        symbol, price, ts=demo_data().now_ns, seq=seq, open=price, high=price, low=price, change="0", change_pct="0"
    )


# --- watchlists -----------------------------------------------------------------------------


def test_watchlists_file_parsing(tmp_path: Path) -> None:
    from tui.watchlists import ALL, WatchlistError, load_watchlists

    base = tmp_path / "config" / "stockctl"
    assert load_watchlists(base).names == [ALL]
    base.mkdir(parents=True)
    (base / "watchlists.json").write_text('{"watchlists": {"fx": ["jio_inr"]}}')
    assert load_watchlists(base).groups == {ALL: None, "fx": frozenset({"JIO_INR"})}
    (base / "watchlists.toml").write_text('tech = ["AAPL", "MSFT"]\ninr = ["JIO_INR", "TATA_INR"]\n')
    lists = load_watchlists(base)  # TOML wins
    assert lists.names == [ALL, "tech", "inr"] and lists.after("inr") == ALL and lists.after("tech") == "inr"
    (base / "watchlists.toml").write_text('tech = "AAPL"\n')
    with pytest.raises(WatchlistError, match="'tech' must be a list of symbols"):
        load_watchlists(base)
    (base / "watchlists.toml").write_text("tech = [\n")
    with pytest.raises(WatchlistError, match=r"watchlists\.toml"):
        load_watchlists(base)


async def test_frozen_watchlists_filter_the_board_with_w(tmp_path: Path) -> None:
    conf = Path(os.environ["XDG_CONFIG_HOME"]) / "stockctl"
    conf.mkdir(parents=True)
    (conf / "watchlists.toml").write_text('tech = ["AAPL", "msft"]\ninr = ["JIO_INR", "TATA_INR", "NOPE"]\n')
    app = frozen_app(tmp_path)

    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: len(board(app).visible_symbols()) == 4, what="board")
        await pilot.press("w")
        assert board(app).visible_symbols() == ["AAPL", "MSFT"]
        assert board(app).border_title == "Tickers · tech"
        await pilot.press("w")
        assert board(app).visible_symbols() == ["JIO_INR", "TATA_INR"]
        await until(pilot, lambda: app.selected in {"JIO_INR", "TATA_INR"}, 3, "selection follows the list")
        await pilot.press("slash", "t", "a", "escape")  # the text filter narrows within the list, then clears
        assert board(app).visible_symbols() == ["JIO_INR", "TATA_INR"]
        await pilot.press("w")
        assert board(app).visible_symbols() == ["AAPL", "JIO_INR", "MSFT", "TATA_INR"]
        assert board(app).border_title == "Tickers"
        (conf / "watchlists.toml").write_text("broken = [\n")
        await pilot.press("w")
        assert len(board(app).visible_symbols()) == 4 and app.is_running
