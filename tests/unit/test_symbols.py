"""Real ticker symbols: the rule (stockctl.wire.symbols) and the subject/key encoding (stockctl.wire.names)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockctl.errors import UsageError
from stockctl.marketdata.replay import ReplayError, parse_row
from stockctl.settings import Settings
from stockctl.wire import names
from stockctl.wire.exchange import load_markets
from stockctl.wire.symbols import SYMBOL_PATTERN, is_symbol, parse_symbol

REAL = ["BRK.B", "BF-B", "BTC-USD", "BTC/USDT", "TATA_INR", "AAPL", "1INCHUSDT", "7203.T", "ETH-USD.X"]


@pytest.mark.parametrize("sym", REAL)
def test_real_tickers_are_accepted_as_spelled(sym: str) -> None:
    assert parse_symbol(sym) == sym
    assert parse_symbol(sym.lower()) == sym
    assert parse_symbol(f" {sym} ") == sym


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("AAPL\n", "control character U+000A"),
        ("AA\x00PL", "control character U+0000"),
        ("AA\x1bPL", "control character U+001B"),
        ("\u202eLPAA", "control character U+202E"),  # a right-to-left override
        ("AA PL", "spaces"),
        ("AA\u00a0PL", "spaces"),
        ("AAPL*", "wildcard"),
        (">", "wildcard"),
        ("md.tick.>", "wildcard"),
        ("\u0410APL", "U+0410 CYRILLIC CAPITAL LETTER A"),  # looks like AAPL
        ("\uff21APL", "FULLWIDTH LATIN CAPITAL LETTER A"),
        ("\ufb00", "not ASCII"),  # the ff ligature: upper() would make it FF
        ("\u0131BM", "not ASCII"),  # dotless i: upper() would make it I
        ("A" * 33, "33 characters"),
        ("BRK..B", "separator"),
        (".AAPL", "separator"),
        ("BTC/", "separator"),
        ("../../etc/passwd", "separator"),
        ("A/./B", "separator"),
        ("AA:PL", "':' is not allowed"),
        ("$(reboot)", "'$' is not allowed"),
        ("[/]", "'[' is not allowed"),
        ("A%2FB", "'%' is not allowed"),
    ],
)
def test_bad_symbols_are_refused_with_the_reason(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_symbol(text)
    message = str(info.value)
    assert message.startswith("bad symbol ")
    assert needle in message
    assert "BTC/USDT" in message  # the rule, with an example, is the fix
    assert type(info.value) is UsageError  # the gateway answers 400 "usageerror", the CLI exits 2


def test_the_pattern_is_matched_whole_not_up_to_a_newline() -> None:
    assert SYMBOL_PATTERN.fullmatch("AAPL") is not None
    assert SYMBOL_PATTERN.fullmatch("AAPL\n") is None
    assert not is_symbol("AAPL\n") and not is_symbol("aapl") and is_symbol("BRK.B")


symbols = st.from_regex(SYMBOL_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 32)


@given(symbols)
def test_the_encoding_round_trips_and_is_a_safe_token(sym: str) -> None:
    assert parse_symbol(sym) == sym
    token = names.symbol_token(sym)
    assert names.symbol_from_token(token) == sym
    for bad in (".", "*", ">", " ", "\t", ":", "/"):
        assert bad not in token
    assert names.symbol_of(names.tick_subject(sym, 8)) == sym
    assert names.symbol_of(names.quote_subject(sym)) == sym
    subject = names.tick_subject(sym, 8).split(".")
    assert subject[:2] == ["md", "tick"] and len(subject) == 4 and 0 <= int(subject[2]) < 8
    assert names.quote_key(sym).split(":") == ["md", "quote", f"{{{token}}}"]


@given(symbols, symbols)
def test_the_encoding_is_one_to_one(a: str, b: str) -> None:
    assert (names.symbol_token(a) == names.symbol_token(b)) == (a == b)


def test_old_symbols_keep_their_subjects_and_their_keys_only_gain_a_hash_tag() -> None:
    assert names.legacy_tick_subject("AAPL") == "md.tick.AAPL"
    assert names.tick_subject("AAPL", 8) == f"md.tick.{names.partition_of('AAPL', 8)}.AAPL"
    assert names.quote_key("TATA_INR") == "md:quote:{TATA_INR}"
    assert names.legacy_tick_subject("BTC-USD") == "md.tick.BTC-USD"
    assert names.tick_subject("BRK.B", 1) == "md.tick.0.BRK%2EB"
    assert names.history_key("BTC/USDT") == "md:hist:{BTC%2FUSDT}"
    assert names.candle_subject("BRK.B", "1m") == "md.candle.BRK%2EB.1m"
    assert names.event_subject("BTC/USDT") == "ex.event.BTC%2FUSDT"


def test_settings_accept_real_symbols_and_refuse_look_alikes(tmp_path) -> None:
    s = Settings(home=tmp_path, symbols="brk.b,BF-B,BTC/USDT,BTC-USD")
    assert s.symbols == ["BRK.B", "BF-B", "BTC/USDT", "BTC-USD"]
    with pytest.raises(ValueError, match="U\\+0410"):
        Settings(home=tmp_path, symbols="\u0410APL")


def test_csv_replay_takes_real_symbols_and_names_the_line_of_a_bad_one() -> None:
    row = parse_row(["1700000000", "brk.b", "412.50"], 3, "day.csv")
    assert row.symbol == "BRK.B"
    with pytest.raises(ReplayError, match=r"^day\.csv:4: bad symbol 'BRK\*': '\*' is a wildcard"):
        parse_row(["1700000000", "BRK*", "412.50"], 4, "day.csv")


def test_a_markets_file_with_a_bad_market_is_refused(tmp_path) -> None:
    good = tmp_path / "good.json"
    spec = (
        '{"symbol":"%s","base":"BTC","quote":"USDT","tick_size":"0.01","lot_size":"1",'
        '"min_qty":"1","max_qty":"100","max_price":"1000000"}'
    )
    good.write_text("[" + spec % "BTC/USDT" + "]")
    assert [m.symbol for m in load_markets(str(good))] == ["BTC/USDT"]
    bad = tmp_path / "bad.json"
    bad.write_text("[" + spec % "BTC USDT" + "]")
    with pytest.raises(ValueError, match="bad market 'BTC USDT'"):
        load_markets(str(bad))


def test_watchlists_take_real_symbols_and_refuse_look_alikes_naming_file_and_list() -> None:
    from tui.watchlists import WatchlistError, parse_watchlists

    groups = parse_watchlists({"crypto": ["btc/usdt", " BTC-USD "], "us": ["brk.b", "BF-B"]}, "w.toml")
    assert groups["crypto"] == frozenset({"BTC/USDT", "BTC-USD"})
    assert groups["us"] == frozenset({"BRK.B", "BF-B"})
    for bad, reason in (("AAPL\x1b", "control character U+001B"), ("\u0410APL", "U+0410"), ("MD.*", "wildcard")):
        with pytest.raises(WatchlistError) as info:
            parse_watchlists({"us": ["MSFT", bad]}, "w.toml")
        assert str(info.value).startswith("w.toml: us: bad symbol ")
        assert reason in str(info.value) and "e.g. BRK.B" in str(info.value)  # the reason, then the rule
