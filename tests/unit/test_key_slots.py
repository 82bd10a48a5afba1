"""Keys that one script or transaction touches together share a Redis Cluster slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from stockctl.wire import names

EMAILS = ["a@example.com", "{odd}@example.com", "b{c@example.com"]


def _slots(*keys: str) -> set[int]:
    return {key_slot(k.encode()) for k in keys}


@pytest.mark.parametrize("symbol", ["AAPL", "BRK.B", "BTC/USDT"])
def test_a_symbols_keys_share_one_slot(symbol: str) -> None:
    keys = [names.quote_key(symbol), names.history_key(symbol), names.signals_key(symbol)]
    keys += [names.candles_key(symbol, iv) for iv in ("1m", "5m", "1h")]
    assert len(_slots(*keys)) == 1


@pytest.mark.parametrize("email", EMAILS)
def test_each_view_list_shares_its_slot_with_its_watermark(email: str) -> None:
    for key in (names.fills_key(email), names.orders_key(email), names.trades_key("TATA_INR")):
        assert len(_slots(key, names.list_seq_key(key))) == 1


@pytest.mark.parametrize("email", EMAILS)
def test_account_keys_share_one_slot(email: str) -> None:
    keys = [names.USERS_KEY, names.DISABLED_KEY, names.user_key(email), names.sessions_key(email)]
    keys += [names.refresh_key("h"), names.used_refresh_key("h"), names.skeleton_key("s")]
    keys += [names.login_failures_key("email", email), names.login_failures_key("ip", "::1")]
    keys += [names.registrations_key("::1")]
    assert len(_slots(*keys)) == 1


def test_alert_keys_share_one_slot() -> None:
    keys = [names.ALERTS_ACTIVE_KEY, names.ALERT_IDS_KEY, names.user_alerts_key(EMAILS[1])]
    assert len(_slots(*keys, names.fired_alerts_key(EMAILS[2]))) == 1


def test_symbols_and_users_spread_over_slots() -> None:
    # Without this, every key in one slot would pass the tests above and scale nothing.
    assert len(_slots(*(names.quote_key(f"SYM{i}") for i in range(50)))) > 40
    assert len(_slots(*(names.fills_key(f"u{i}@example.com") for i in range(50)))) > 40


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("md:quote:AAPL", "md:quote:{AAPL}"),
        ("md:candles:BRK%2EB:1m", "md:candles:{BRK%2EB}:1m"),
        ("ex:fills:{x}@y.com", "ex:fills:{{x}@y.com}"),
        ("auth:user:a@b.c", "{auth}:user:a@b.c"),
        ("alerts:fired:a@b.c", "{alerts}:fired:a@b.c"),
        ("md:quote:{AAPL}", None),
        ("ex:fills:{a@b.c}:seq", None),
        ("md:symbols", None),
        ("ex:views-seq", None),
    ],
)
def test_legacy_names_map_once(old: str, new: str | None) -> None:
    assert names.legacy_key_renamed(old) == new
