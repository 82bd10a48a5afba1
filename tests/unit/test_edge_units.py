"""Pure pieces of the edge fixes (issue 10, item 7 and the proxy secret), without servers."""

from __future__ import annotations

import re
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from daemons.gateway.auth_proxy import inside_auth
from stockctl.auth.proxies import PROXY_SECRET_FILE, load_proxy_secret, secret_matches
from stockctl.auth.users import InvalidEmail, normalise_email, skeleton
from stockctl.wire.gateway import COID_RE
from stockctl.wire.symbols import is_symbol

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("stockctl", "daemons", "tui") for p in (ROOT / d).rglob("*.py")]


def test_no_identifier_pattern_is_matched_with_a_dollar_that_lets_a_newline_through() -> None:
    # `re.match("...$")` accepts "X\n": every pattern is compiled without anchors and fullmatched.
    offenders = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.match\(", line) or re.search(r"re\.compile\(r?[\"'].*\$[\"']", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("text", ["X\n", "X\r\n", "\nX", "X Y", "", "x" * 65])
def test_client_order_ids_must_be_whole(text: str) -> None:
    assert COID_RE.fullmatch(text) is None


def test_symbols_must_be_whole() -> None:
    assert is_symbol("AAPL")
    assert not is_symbol("AAPL\n")


def test_emails_are_nfkc_normalised_and_lookalikes_are_refused_or_skeletonised() -> None:
    assert normalise_email("\uff41lice@\uff45xample.com") == "alice@example.com"  # fullwidth
    with pytest.raises(InvalidEmail, match="mixes scripts"):
        normalise_email("\u0430lice@example.com")  # Cyrillic а among Latin letters
    with pytest.raises(InvalidEmail, match="mixes scripts"):
        normalise_email("alice@ex\u0430mple.com")  # in the domain too
    cyrillic = normalise_email("\u0430\u0440\u0435@example.com")  # аре: one script, allowed as such
    assert cyrillic != "ape@example.com" and skeleton(cyrillic) == "ape@example.com"
    assert skeleton("müller@example.de") == "müller@example.de"  # an accent is not a look-alike


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("/auth/login", True),
        ("/auth/jwks.json", True),
        ("/auth/../healthz", False),
        ("/auth/%2e%2e/healthz", False),
        ("/auth/%2E%2E/healthz", False),
        ("/auth/.%2e/x", False),
        ("/auth/%252e%252e/x", False),
        ("/auth/x/../../healthz", False),
        ("/auth/a%2f..%2fb", False),
        ("/auth/..\\healthz", False),
        ("/auth/%25252525252e", False),
    ],
)
def test_the_auth_proxy_path_check(path: str, inside: bool) -> None:
    assert inside_auth(path) is inside


def test_the_proxy_secret_is_created_once_private_and_shared(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:  # daemons starting at the same time agree on one secret
        secrets = set(pool.map(lambda _: load_proxy_secret(tmp_path / "secrets"), range(16)))

    (secret,) = secrets
    assert len(secret) >= 40
    path = tmp_path / "secrets" / PROXY_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [PROXY_SECRET_FILE]  # no temp files left
    assert load_proxy_secret(tmp_path / "secrets") == secret
    assert secret_matches(secret, secret)
    assert not secret_matches(secret, None) and not secret_matches(secret, secret[:-1])


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    # Two listeners configured in one go once got one port (the gateway then failed to bind).
    from stockctl.instance.infra import free_port

    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_free_port_picks_from_the_range_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two test workers once handed out one port (auth: "cannot listen ... in use"): each now
    # gets a range of its own, and a port of it already bound elsewhere is skipped.
    import socket

    from stockctl.instance.infra import free_port, port_is_free

    # A window below the test workers' ranges (20000 up) that is free right now: a fixed one
    # inside them was once in use by another worker's server (EADDRINUSE at the bind below).
    base = next(b for b in range(15000, 19960, 40) if all(port_is_free("127.0.0.1", b + i) for i in range(40)))
    monkeypatch.setenv("STOCKCTL_FREE_PORTS", f"{base}-{base + 39}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base))
        taken.listen()
        ports = [free_port() for _ in range(20)]
    assert all(base + 1 <= p <= base + 39 for p in ports) and len(set(ports)) == 20
