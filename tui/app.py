"""``stockctl tui``: the Textual trading terminal. It talks to the gateway only.

Data arrives through workers (``tui.workers.job``) that post typed messages
(``tui.messages``): REST calls run in thread workers, the WebSocket feed in an async worker
that reconnects and resubscribes by itself. Workers never catch: one handler,
``_worker_failed``, turns their errors into notices, the login screen or a retry.
Widgets merge what arrives and redraw at most 20 times a second. Quotes are not a message
each: a 50 ms timer applies those the router kept, in one batch (``_apply_quotes``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from contextlib import closing
from functools import wraps
from typing import Any, TypeVar

from textual import on
from textual.actions import SkipAction
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Container, Horizontal
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, TabbedContent, TabPane
from textual.worker import Worker, WorkerFailed, WorkerState

from stockctl.alerts.rules import Alert, describe
from stockctl.errors import StockctlError
from stockctl.settings import Settings
from tui.keys import BINDINGS, check_theme, keymap, palette_commands
from tui.messages import (
    AlertAddResult,
    AlertFired,
    AlertsSnapshot,
    AuthState,
    BalancesLoaded,
    BookChanged,
    ChartLoaded,
    ConnectionChanged,
    FeedProblem,
    FillsLoaded,
    Initial,
    InitialLoaded,
    OpenOrdersSnapshot,
    OrderEventArrived,
    OrderResult,
    QuoteArrived,
    SignalsArrived,
    TradesArrived,
)
from tui.router import FrameRouter
from tui.screens.alert import AlertScreen
from tui.screens.login import LoginScreen
from tui.screens.watchlist import Edited, WatchlistScreen
from tui.source import FrozenData, FrozenSource, GatewaySource, Source
from tui.watchlists import ALL, WatchlistError, load_watchlists
from tui.widgets.balances_table import BalancesTable
from tui.widgets.fills_table import FillsTable, fill_from_trade
from tui.widgets.open_orders import OpenOrders
from tui.widgets.order_book import OrderBook
from tui.widgets.order_entry import OrderEntry
from tui.widgets.positions import PositionsTable
from tui.widgets.price_chart import RANGES, SIGNALS_KEPT, PriceChart
from tui.widgets.signals_log import SignalsLog
from tui.widgets.ticker_board import TickerBoard
from tui.widgets.trade_tape import TradeTape
from tui.workers import job

W = TypeVar("W", bound=Widget)

NARROW_BELOW = 120
"""Terminal width under which the screen shows the board and one panel at a time."""

VIEWS = ("chart", "signals", "book", "order", "orders", "fills", "balances", "positions")
TAB_VIEWS = ("book", "order", "orders", "fills", "balances", "positions")
FILLS_SHOWN = 100
FILLS_FOR_POSITIONS = 1000  # the most the gateway returns (and keeps) per user
SPARK_POINTS = 12
RETRY_S = 2.0
QUOTES_EVERY_S = 0.05  # quotes are applied in batches, at most 20 times a second

STATE_LABEL = {
    "starting": "○ starting",
    "connecting": "◌ connecting",
    "live": "● live",
    "disconnected": "✕ disconnected",
    "frozen": "■ frozen data",
    "logged out": "○ logged out",
}


def _while_open(handler: Callable[..., None]) -> Callable[..., None]:
    """Drop data that arrives while the app is shutting down (its panels are gone)."""

    @wraps(handler)
    def guarded(self: StockApp, message: Any) -> None:
        if self._closing or not self.main_screen.is_attached:
            return
        handler(self, message)

    return guarded


class StockApp(App[None]):
    """The trading terminal: ticker board, chart, signals, book and tape, orders, fills, balances."""

    TITLE = "stockctl"
    AUTO_FOCUS = "#board"
    CSS_PATH = "app.tcss"

    BINDINGS = BINDINGS  # tui/keys.py: each has an id, the name [tui.keys] rebinds it by

    def __init__(
        self,
        settings: Settings,
        source: Source | None = None,
        token: str | None = None,
        stale_after: float = 10.0,
    ) -> None:
        super().__init__()
        self.settings = settings
        # Checked before anything starts: a bad [tui] setting is one line from the CLI.
        self.theme = check_theme(settings.tui_theme, self.available_themes)
        self.set_keymap(keymap(settings.tui_keys))
        self._froze_live = False
        self.source: Source = source or GatewaySource(settings, token)
        self.stale_after = stale_after
        self.router = FrameRouter()
        self.connection = "starting"
        self.connection_detail = ""
        self.ever_live = False
        self.user: str | None = None
        self.markets: list[dict[str, Any]] = []
        self.symbols: list[str] = []
        self.selected = ""
        self.modes = ["ticks", *settings.candle_intervals]
        self.view = "chart"
        self.balances_due = False
        self.feed_started = False
        self.alerts_seen: set[int] | None = None  # fired alert ids already shown (None: no snapshot yet)
        self._panels: dict[type, Widget] = {}

    # --- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self.source.live)
        with Container(id="main"):
            yield TickerBoard(now_ns=self.source.now_ns, stale_after=self.stale_after, id="ticker")
            yield PriceChart(self.settings.sma_fast, self.settings.sma_slow, id="chart")
            yield SignalsLog(id="signals")
            with TabbedContent(id="tabs", initial="tab-book"):
                with TabPane("Book", id="tab-book"), Horizontal(id="book-row"):
                    yield OrderBook(id="book")
                    yield TradeTape(id="tape")
                with TabPane("Order", id="tab-order"):
                    yield OrderEntry(id="entry")
                with TabPane("Orders", id="tab-orders"):
                    yield OpenOrders(id="orders")
                with TabPane("Fills", id="tab-fills"):
                    yield FillsTable(id="fills")
                with TabPane("Balances", id="tab-balances"):
                    yield BalancesTable(id="balances")
                with TabPane("Positions", id="tab-positions"):
                    yield PositionsTable(id="positions")
        yield Footer()

    def panel(self, kind: type[W]) -> W:
        """The one widget of this type on the main screen (also while the login screen is up)."""
        found = self._panels.get(kind)
        if found is None:
            found = self._panels[kind] = self.main_screen.query_one(kind)
        return found  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.main_screen = self.screen
        self._show_state("starting", "")
        self._layout(self.size.width)
        self.set_interval(0.5, self._maybe_reload_balances)
        self.set_interval(RETRY_S, self._refresh_candles)
        self.set_interval(QUOTES_EVERY_S, self._apply_quotes)
        self._start_when_mounted()
        self._freeze_heap()

    def _freeze_heap(self) -> None:
        """Move what exists now (widgets, styles, loaded data) out of the garbage collector's way.

        A full collection walks every object, and under a fast feed collections come often and
        hold frames back (``stockctl bench tui`` measures the input lag). Done at start and once
        more when the first live data is in.
        """
        gc.collect()
        gc.freeze()

    def _start_when_mounted(self) -> None:
        """Start loading once every panel (tab panes mount late) can receive data."""
        try:
            kinds = (TickerBoard, PriceChart, SignalsLog, OrderBook, TradeTape, OrderEntry, OpenOrders, FillsTable)
            for kind in (*kinds, BalancesTable, PositionsTable):
                self.panel(kind)
        except NoMatches:
            self.set_timer(0.02, self._start_when_mounted)
            return
        self._check_login()

    def on_resize(self, event: Any) -> None:
        if hasattr(self, "main_screen"):
            self._layout(event.size.width)

    def _layout(self, width: int) -> None:
        main = self.main_screen.query_one("#main")
        main.set_class(width < NARROW_BELOW, "narrow")
        for v in ("chart", "signals", "tabs"):
            main.remove_class(f"view-{v}")
        main.add_class("view-tabs" if self.view in TAB_VIEWS else f"view-{self.view}")

    # --- start: login, REST, feed ---------------------------------------------------------

    @job("login", exclusive=True)
    def _check_login(self) -> None:
        self.source.check_login()
        self.post_message(AuthState(True))

    def on_auth_state(self, message: AuthState) -> None:
        if message.ok:
            self._load_initial()
            return
        self._show_state("logged out", message.detail)
        if not isinstance(self.screen, LoginScreen):
            self.push_screen(LoginScreen(self.settings, message.detail), self._logged_in)

    def _logged_in(self, email: str | None) -> None:
        self.user = email
        self._load_initial()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place where a job's error becomes what the user sees (jobs never catch).

        A lost login shows the login screen; the first REST load retries; the live feed and
        the login form show any error and keep the screen. Elsewhere a StockctlError is a
        notice and anything else a bug, raised here to stop the app with its traceback as
        Textual does for a failed worker.
        """
        from stockctl.client.credentials import NotLoggedIn

        worker, error = event.worker, event.worker.error
        if event.state != WorkerState.ERROR or not isinstance(error, Exception):
            return
        group, readable = worker.group, isinstance(error, StockctlError)
        text = str(error) if readable else f"{error.__class__.__name__}: {error}"
        where = f"{worker.name}: " if worker.name else ""
        if isinstance(error, NotLoggedIn) and group in ("initial", "feed"):
            if group == "feed":
                self.feed_started = False  # the next InitialLoaded after the login starts it again
            self.post_message(AuthState(False, text))
        elif group == "feed":
            self.post_message(FeedProblem(f"live feed stopped: {error.__class__.__name__}: {error}", "error"))
        elif group == "authenticate":
            for screen in self.screen_stack:
                if isinstance(screen, LoginScreen):
                    screen.show_status(text, error=True)
        elif not readable:
            raise WorkerFailed(error)
        elif group == "login":
            self.post_message(AuthState(False, text))
        elif group == "initial":
            self.post_message(ConnectionChanged("disconnected", text))
            self.set_timer(RETRY_S, self._load_initial)
        elif group in ("orders", "cancels"):
            self.post_message(OrderResult(where + text, error=True, in_form=group == "orders"))
        elif group == "alerts":
            self.post_message(AlertAddResult(where + text, error=True))
        else:
            self.post_message(FeedProblem(where + text))

    @job("initial", exclusive=True)
    def _load_initial(self) -> None:
        with closing(self.source.api()) as api:
            quotes = api.quotes()
            history = {q.symbol: [p.price for p in api.history(q.symbol, SPARK_POINTS)] for q in quotes}
            initial = Initial(quotes, history)
            try:
                initial.markets = api.markets()
            except StockctlError as exc:  # quotes without the exchange: the board still starts
                initial.markets_error = str(exc)
        self.post_message(InitialLoaded(initial))

    @_while_open
    def on_initial_loaded(self, message: InitialLoaded) -> None:
        init = message.initial
        self.markets = init.markets
        market_syms = [m["symbol"] for m in init.markets if "symbol" in m]
        self.symbols = sorted({q.symbol for q in init.quotes} | set(market_syms))
        board = self.panel(TickerBoard)
        board.seed(init.quotes, init.history, extra=market_syms)
        positions = self.panel(PositionsTable)
        for q in init.quotes:
            positions.set_last(q.symbol, q.price)
        entry = self.panel(OrderEntry)
        entry.set_markets(init.markets)
        entry.revalidate()
        if init.markets_error:
            self.panel(OrderBook).border_subtitle = "exchange unavailable"
            self.notify(f"exchange: {init.markets_error}", severity="warning", timeout=4)
        if not self.selected and self.symbols:
            self.select_symbol(board.visible_symbols()[0] if board.visible_symbols() else self.symbols[0])
        self._load_account()
        if not self.feed_started:
            self.feed_started = True
            self._run_feed(self._channel_groups())

    def _channel_groups(self) -> list[list[str]]:
        quotes = [q for q in self.symbols if q not in {m.get("symbol") for m in self.markets}]
        groups = [[f"quotes:{s}" for s in self.symbols] + [f"signals:{s}" for s in quotes]]
        for m in self.markets:
            groups.append([f"book:{m['symbol']}", f"trades:{m['symbol']}"])
        if self.markets:
            groups.append(["orders"])
        groups.append(["alerts"])
        return groups

    @job("feed", exclusive=True, thread=False)
    async def _run_feed(self, groups: list[list[str]]) -> None:
        def on_frame(kind: str, channel: str, data: bytes) -> None:
            for msg in self.router.route(kind, channel, data):
                self.post_message(msg)

        def on_state(state: str, detail: str) -> None:
            self.post_message(ConnectionChanged(state, detail))

        def on_error(text: str) -> None:
            self.post_message(FeedProblem(text))

        await self.source.feed(groups, on_frame, on_state, on_error)

    # --- connection state ---------------------------------------------------------------

    def _show_state(self, state: str, detail: str) -> None:
        if state == "live" and not self._froze_live:
            self._froze_live = True
            self.call_after_refresh(self._freeze_heap)
        self.connection, self.connection_detail = state, detail
        label = STATE_LABEL.get(state, state)
        who = f" · {self.user}" if self.user and state == "live" else ""
        self.sub_title = f"{label}{who}" + (f" — {detail}" if detail and state != "live" else "")
        self.main_screen.set_class(state == "disconnected", "disconnected")

    @_while_open
    def on_connection_changed(self, message: ConnectionChanged) -> None:
        previous = self.connection
        if message.state == "live" and message.detail:
            self.user = message.detail
        if message.state == "connecting" and previous == "disconnected":
            self._show_state("disconnected", f"reconnecting ({message.detail})")
            return
        self._show_state(message.state, "" if message.state == "live" else message.detail)
        if message.state == "live":
            if self.ever_live and previous != "live":
                self.notify("reconnected to the gateway; resubscribed", timeout=3)
                self._reload_after_gap()
            self.ever_live = True
        elif message.state == "disconnected" and previous == "live":
            self.notify(f"gateway connection lost: {message.detail}", severity="warning", timeout=4)

    @_while_open
    def on_feed_problem(self, message: FeedProblem) -> None:
        self.notify(message.text, severity=message.severity, timeout=5)  # type: ignore[arg-type]

    def _reload_after_gap(self) -> None:
        if self.selected:
            self._load_chart(self.selected, self.panel(PriceChart).mode)
        self._load_account()

    # --- market data --------------------------------------------------------------------

    def on_quote_arrived(self, message: QuoteArrived) -> None:
        self.router.quotes.append(message.quote)  # applied with the feed's, on the next tick

    def _apply_quotes(self) -> None:
        """Every 50 ms, the quotes routed since: the board and positions show the latest, the chart each tick."""
        if not self.router.quotes or self._closing or not self.main_screen.is_attached:
            return
        board, chart, positions = self.panel(TickerBoard), self.panel(PriceChart), self.panel(PositionsTable)
        for q in self.router.take_quotes():
            board.update_quote(q)
            positions.set_last(q.symbol, q.price)  # marks it dirty only: redrawn on its own timer
            if q.symbol == chart.symbol:
                chart.add_price(q.symbol, q.price, q.seq, q.ts)

    @_while_open
    def on_signals_arrived(self, message: SignalsArrived) -> None:
        self.panel(SignalsLog).add_signals(message.signals)
        self.panel(PriceChart).add_signals(message.signals)

    @_while_open
    def on_book_changed(self, message: BookChanged) -> None:
        self.panel(OrderBook).update_book(message.market, message.bids, message.asks, message.last, message.seq)

    @_while_open
    def on_trades_arrived(self, message: TradesArrived) -> None:
        self.panel(TradeTape).add_trades(message.market, message.trades)

    @_while_open
    @on(TickerBoard.Selected)
    def _board_selected(self, message: TickerBoard.Selected) -> None:
        self.select_symbol(message.symbol)

    def select_symbol(self, symbol: str) -> None:
        """Chart ``symbol``; show its book and preselect it for orders if it is a market."""
        if symbol == self.selected:
            return
        self.selected = symbol
        chart = self.panel(PriceChart)
        chart.clear(symbol)
        self._load_chart(symbol, chart.mode)
        if any(m.get("symbol") == symbol for m in self.markets):
            self.panel(OrderBook).show(symbol)
            self.panel(TradeTape).show(symbol)
            self.panel(OrderEntry).choose_market(symbol)

    @job("chart", "chart {symbol}", exclusive=True)
    def _load_chart(self, symbol: str, mode: str) -> None:
        chart = self.panel(PriceChart)
        with closing(self.source.api()) as api:
            points, candles = [], []
            if mode == "ticks":
                points = [(p.ts, p.price) for p in api.history(symbol, chart.wanted)]
            else:
                candles = api.candles(symbol, mode, chart.wanted)
            signals = api.signals(symbol, SIGNALS_KEPT)
        self.post_message(ChartLoaded(symbol, mode, points, candles, signals))

    @_while_open
    def on_chart_loaded(self, message: ChartLoaded) -> None:
        if message.symbol != self.selected:
            return
        chart = self.panel(PriceChart)
        chart.add_signals(message.signals)
        if message.mode == "ticks":
            chart.set_series(message.symbol, message.mode, message.points)
        else:
            chart.set_candles(message.symbol, message.mode, message.candles)

    def _refresh_candles(self) -> None:
        chart = self.panel(PriceChart)
        if chart.mode != "ticks" and self.selected and self.source.live and self.connection == "live":
            self._load_chart(self.selected, chart.mode)

    # --- account ------------------------------------------------------------------------

    @job("account", "account", exclusive=True)
    def _load_account(self) -> None:
        if not self.markets:
            return
        with closing(self.source.api()) as api:
            balances = api.balances()
            fills = api.fills(FILLS_FOR_POSITIONS)
        self.post_message(BalancesLoaded(balances))
        self.post_message(FillsLoaded(fills))

    @_while_open
    def on_balances_loaded(self, message: BalancesLoaded) -> None:
        self.panel(BalancesTable).set_balances(message.balances)

    @_while_open
    def on_fills_loaded(self, message: FillsLoaded) -> None:
        self.panel(FillsTable).add_fills(message.fills[-FILLS_SHOWN:])
        self.panel(PositionsTable).add_fills(message.fills)

    @_while_open
    def on_open_orders_snapshot(self, message: OpenOrdersSnapshot) -> None:
        self.panel(OpenOrders).set_orders(message.orders)

    @_while_open
    def on_order_event_arrived(self, message: OrderEventArrived) -> None:
        ev = message.event
        self.panel(OpenOrders).apply_event(ev, self.user)
        kind = ev.get("event")
        if kind == "trade" and self.user:
            fill = fill_from_trade(ev, self.user)
            if fill:
                self.panel(PositionsTable).add_fills([fill])
            if fill and self.panel(FillsTable).add_fills([fill]):
                self.notify(f"filled: {fill['side']} {fill['qty']} {fill['market']} @ {fill['price']}", timeout=4)
        elif kind == "rejected":
            self.notify(f"rejected: {ev.get('reason', '')}", severity="error", timeout=5)
        self.balances_due = True

    def _maybe_reload_balances(self) -> None:
        if self.balances_due:
            self.balances_due = False
            self._load_account()

    @on(OrderEntry.Submit)
    def _submit(self, message: OrderEntry.Submit) -> None:
        self._place(message.order)

    @job("orders")
    def _place(self, order: dict[str, Any]) -> None:
        with closing(self.source.api()) as api:
            doc = api.place(order)
        fills = ", ".join(f"{f['qty']}@{f['price']}" for f in doc.get("filled", []))
        text = f"order {doc.get('order_id', '?')}: {doc.get('status', 'done')}" + (
            f" (filled {fills})" if fills else ""
        )
        self.post_message(OrderResult(text))

    @_while_open
    def on_order_result(self, message: OrderResult) -> None:
        if message.in_form:
            self.panel(OrderEntry).show_result(message.text, message.error)
        severity, timeout = ("error", 5) if message.error else ("information", 3)
        self.notify(message.text, severity=severity, timeout=timeout)
        self.balances_due = self.balances_due or not message.error  # a change: reload the balances

    @on(OpenOrders.EditRequested)
    def _edit_requested(self, message: OpenOrders.EditRequested) -> None:
        self.panel(OrderEntry).edit(message.order)
        self.action_view("order")

    @on(OrderEntry.Amend)
    def _amend_requested(self, message: OrderEntry.Amend) -> None:
        self._amend(message.order_id, message.market, message.price, message.qty)

    @job("orders", "amend {order_id}")
    def _amend(self, order_id: int, market: str, price: str | None, qty: str | None) -> None:
        with closing(self.source.api()) as api:
            doc = api.amend(order_id, price=price, qty=qty, market=market or None)
        text = f"order {order_id} amended: {doc.get('qty')}@{doc.get('price') or 'market'} ({doc.get('status')})"
        self.post_message(OrderResult(text))

    @on(OpenOrders.CancelRequested)
    def _cancel_requested(self, message: OpenOrders.CancelRequested) -> None:
        self._cancel(message.order_id, message.market)

    @job("cancels", "cancel {order_id}")
    def _cancel(self, order_id: int, market: str) -> None:
        with closing(self.source.api()) as api:
            api.cancel(order_id, market or None)
        self.post_message(OrderResult(f"order {order_id} cancelled", in_form=False))

    # --- price alerts -------------------------------------------------------------------

    @job("alerts", "alert not set")
    def _add_alert(self, body: dict[str, Any]) -> None:
        with closing(self.source.api()) as api:
            added = api.add_alert(body["symbol"], body["condition"], body.get("threshold"), body.get("side"))
        text = f"alert {added.alert.id} set: {describe(added.alert)} (last {added.last_price})"
        self.post_message(AlertAddResult(text + (f"; {added.note}" if added.note else "")))

    def on_alert_add_result(self, message: AlertAddResult) -> None:
        self.notify(message.text, severity="error" if message.error else "information", timeout=6, markup=False)

    @_while_open
    def on_alerts_snapshot(self, message: AlertsSnapshot) -> None:
        # After a reconnect, say what fired while the feed was away; the first snapshot is history.
        if self.alerts_seen is not None:
            for alert in message.fired:
                if alert.id not in self.alerts_seen:
                    self._show_fired(alert)
        self.alerts_seen = (self.alerts_seen or set()) | {a.id for a in message.fired}

    @_while_open
    def on_alert_fired(self, message: AlertFired) -> None:
        if message.alert.id not in (self.alerts_seen or set()):
            self._show_fired(message.alert)

    def _show_fired(self, alert: Alert) -> None:
        if self.alerts_seen is not None:
            self.alerts_seen.add(alert.id)
        crossover = f" on a {alert.signal} crossover" if alert.signal else ""
        self.notify(
            f"{describe(alert)}: now {alert.fired_price}{crossover}",
            title=f"Alert {alert.id} fired",
            severity="warning",
            timeout=10,
            markup=False,
        )

    def _alert_form_closed(self, body: dict[str, Any] | None) -> None:
        if body is not None:
            self._add_alert(body)

    # --- actions ------------------------------------------------------------------------

    def action_filter(self) -> None:
        """Filter the ticker board by symbol."""
        self.panel(TickerBoard).action_filter()

    def action_sort(self) -> None:
        """Sort the ticker board by the next column."""
        self.panel(TickerBoard).action_cycle_sort()

    def action_next_watchlist(self) -> None:
        """Show the next watchlist on the ticker board (from watchlists.toml in the config dir)."""
        board = self.panel(TickerBoard)
        try:
            lists = load_watchlists()
        except WatchlistError as exc:
            self.notify(f"watchlists: {exc}", severity="warning", timeout=5)
            lists = None
        if lists is None or len(lists.names) == 1:
            if lists is not None:
                from stockctl.client.credentials import config_dir

                where = config_dir() / "watchlists.toml"
                self.notify(f'no watchlists: add name = ["SYM", ...] lines to {where}', timeout=4)
            board.set_watchlist(ALL, None)
            return
        name = lists.after(board.watch_name)
        board.set_watchlist(name, lists.groups[name])
        if board.visible_symbols() and self.selected not in board.visible_symbols():
            self.select_symbol(board.visible_symbols()[0])

    def action_edit_watchlist(self, how: str) -> None:
        """Add the selected symbol to the shown watchlist, or remove it (a form; saved to the file)."""
        name = self.panel(TickerBoard).watch_name
        self.push_screen(WatchlistScreen(how == "add", "" if name == ALL else name, self.selected), self._edited)

    def _edited(self, edited: Edited | None) -> None:
        if edited is None:
            return
        quoted = "" if edited.symbol in self.symbols or not edited.add else " (not quoted by this instance)"
        self.notify(edited.describe() + quoted, severity="information" if edited.changed else "warning", timeout=4)
        board = self.panel(TickerBoard)
        board.set_watchlist(edited.name, edited.lists.groups.get(edited.name))
        if board.visible_symbols() and self.selected not in board.visible_symbols():
            self.select_symbol(board.visible_symbols()[0])

    def action_range(self, step: int) -> None:
        """Show fewer or more points on the chart."""
        chart = self.panel(PriceChart)
        chart.range_index = max(0, min(len(RANGES) - 1, chart.range_index + step))
        if self.selected:
            self._load_chart(self.selected, chart.mode)

    def action_interval(self) -> None:
        """Switch the chart between ticks and each candle interval."""
        chart = self.panel(PriceChart)
        chart.mode = (
            self.modes[(self.modes.index(chart.mode) + 1) % len(self.modes)] if chart.mode in self.modes else "ticks"
        )
        if self.selected:
            chart.clear(self.selected)
            chart.border_title = f"{self.selected} · {chart.mode} · loading…"
            self._load_chart(self.selected, chart.mode)

    def action_submit_order(self) -> None:
        """Submit the order in the order entry form."""
        if self.screen is not self.main_screen:
            # A priority binding reaches past a dialog: leave ctrl+s to it (the alert form adds with it).
            raise SkipAction()
        self.action_view("order")
        self.panel(OrderEntry).submit()

    def action_cancel_order(self) -> None:
        """Cancel the selected open order."""
        self.action_view("orders")
        self.panel(OpenOrders).action_cancel_selected()

    def action_add_alert(self) -> None:
        """Set a price alert for the selected symbol (above, below, or on an SMA crossover)."""
        if not self.selected:
            self.notify("select a symbol first", severity="warning", timeout=3)
            return
        quote = self.panel(TickerBoard).quotes.get(self.selected)
        self.push_screen(AlertScreen(self.selected, quote.price if quote else None), self._alert_form_closed)

    def action_reload(self) -> None:
        """Reload quotes, markets, chart and account over REST."""
        self._load_initial()
        if self.selected:
            self._load_chart(self.selected, self.panel(PriceChart).mode)

    def action_view(self, view: str) -> None:
        """Show a panel: chart, signals, book, order, orders, fills, balances or positions."""
        if view not in VIEWS:
            return
        self.view = view
        if view in TAB_VIEWS:
            self.panel(TabbedContent).active = f"tab-{view}"
        self._layout(self.size.width)

    def action_next_view(self) -> None:
        """Show the next panel (on a narrow terminal, one panel is shown under the board)."""
        self.action_view(VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)])

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from palette_commands(self)


def make_app(
    settings: Settings, token: str | None = None, data: FrozenData | None = None, stale_after: float = 10.0
) -> StockApp:
    """The app, for the CLI and for tests: ``token`` skips the stored login, ``data`` the network."""
    source = FrozenSource(data) if data is not None else GatewaySource(settings, token)
    return StockApp(settings, source=source, stale_after=stale_after)
