"""Account rules, pure: email normalisation, the password policy, Argon2id hashes, the throttled address."""

from __future__ import annotations

import pytest

from stockctl.auth.proxies import TrustedProxies
from stockctl.auth.users import (
    COMMON_PASSWORDS,
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    InvalidEmail,
    UserInfo,
    WeakPassword,
    check_password_policy,
    hash_password,
    needs_rehash,
    normalise_email,
    token_hash,
    verify_password,
)

# --- email -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("ada@example.com", "ada@example.com"),
        ("Ada.Lovelace@Example.COM", "ada.lovelace@example.com"),
        ("  bob@example.org \n", "bob@example.org"),
        ("ÜNÏ@Example.com", "ünï@example.com"),
        ("bob@MÜNCHEN.de", "bob@münchen.de"),
        ("x+tag@sub.example.co.uk", "x+tag@sub.example.co.uk"),
    ],
)
def test_emails_are_stored_lower_cased_and_trimmed(given: str, stored: str) -> None:
    assert normalise_email(given) == stored


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("plainaddress", "not a valid email address"),
        ("a@b", "not a valid email address"),
        ("a b@example.com", "not a valid email address"),
        ("a@@example.com", "not a valid email address"),
        ("@example.com", "not a valid email address"),
        ("a@example..com", "not a valid email address"),
        ('"q"@example.com', "not a valid email address"),
        ("a@localhost", "not a valid email address"),
        ("x" * 250 + "@example.com", "too long"),
    ],
)
def test_bad_emails_are_refused_with_a_reason(given: str, why: str) -> None:
    with pytest.raises(InvalidEmail, match=why):
        normalise_email(given)


def test_a_non_string_email_is_refused() -> None:
    with pytest.raises(InvalidEmail, match="must be a string"):
        normalise_email(42)  # type: ignore[arg-type]


# --- password policy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["correct horse battery staple", "Tr0ub4dor&3x", "ten chars!", "paßwörter sind lang", "x" * 127 + "y"],
)
def test_good_passwords_pass(password: str) -> None:
    check_password_policy(password, "ada@example.com")


@pytest.mark.parametrize(
    ("password", "email", "rule"),
    [
        ("short", "", r"at least 10 characters \(got 5\)"),
        ("nine char", "", r"at least 10 characters \(got 9\)"),
        ("x" * 128 + "y", "", "at most 128 characters"),
        ("aaaaaaaaaaaa", "", "one character repeated"),
        ("ada@example.com", "ada@example.com", "your email address"),
        ("ADA@EXAMPLE.COM", "ada@example.com", "your email address"),
        ("adalovelace", "adalovelace@example.com", "your email address"),
        ("password123", "", "most common passwords"),
        ("Password123", "", "most common passwords"),
        ("QWERTYUIOP", "", "most common passwords"),
        ("ｐａｓｓｗｏｒｄ１２３", "", "most common passwords"),  # fullwidth: same password after NFKC
    ],
)
def test_weak_passwords_are_refused_naming_the_rule(password: str, email: str, rule: str) -> None:
    with pytest.raises(WeakPassword, match=rule):
        check_password_policy(password, email)


def test_the_common_list_only_holds_passwords_the_length_rule_lets_through() -> None:
    assert len(COMMON_PASSWORDS) >= 50
    assert all(MIN_PASSWORD_CHARS <= len(p) <= MAX_PASSWORD_CHARS for p in COMMON_PASSWORDS)
    assert all(p == p.lower() for p in COMMON_PASSWORDS)


# --- hashes -----------------------------------------------------------------------------------


def test_passwords_are_hashed_with_argon2id_and_verify() -> None:
    h = hash_password("correct horse battery staple")

    assert h.startswith("$argon2id$")
    assert "correct horse" not in h
    assert verify_password(h, "correct horse battery staple")
    assert not verify_password(h, "correct horse battery stapl")
    assert not needs_rehash(h)


def test_a_password_typed_in_another_unicode_form_still_verifies() -> None:
    composed, decomposed = "caf\u00e9 au lait!", "cafe\u0301 au lait!"

    assert verify_password(hash_password(composed), decomposed)


def test_a_broken_hash_never_verifies() -> None:
    assert not verify_password("not-a-hash", "whatever it is")
    assert needs_rehash("not-a-hash")


def test_refresh_tokens_are_kept_by_sha256() -> None:
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_user_info_doc_is_iso_utc() -> None:
    doc = UserInfo("ada@example.com", 0.0, True, 2).doc()

    assert doc == {"email": "ada@example.com", "created": "1970-01-01T00:00:00+00:00", "disabled": True, "sessions": 2}


# --- the address login throttles count against ---------------------------------------------


LOOPBACK = ["127.0.0.1/32", "::1/128"]


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "counted"),
    [
        ([], "127.0.0.1", ["198.51.100.1"], "127.0.0.1"),  # by default nobody's header is believed
        ([], "::1", ["2001:db8::1"], "::1"),
        (LOOPBACK, "203.0.113.5", None, "203.0.113.5"),
        (LOOPBACK, "203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # not a trusted proxy: header ignored
        (LOOPBACK, "127.0.0.1", None, "127.0.0.1"),
        (LOOPBACK, "127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        (LOOPBACK, "127.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # the hop the proxy saw
        (LOOPBACK, "127.0.0.1", ["6.6.6.6", "198.51.100.2"], "198.51.100.2"),
        (LOOPBACK, "127.0.0.1", ["not-an-ip"], "127.0.0.1"),
        (LOOPBACK, "::1", ["2001:db8::1"], "2001:db8::1"),
        (LOOPBACK, "::ffff:127.0.0.1", ["198.51.100.3"], "198.51.100.3"),
        (LOOPBACK, "::ffff:203.0.113.5", ["198.51.100.3"], "203.0.113.5"),
        (LOOPBACK, None, ["198.51.100.1"], "unknown"),
        (["10.0.0.0/8"], "10.0.0.2", ["6.6.6.6, 198.51.100.4, 10.0.0.1"], "198.51.100.4"),  # two trusted hops
        (["10.0.0.0/8"], "10.0.0.2", ["10.0.0.7"], "10.0.0.7"),  # all trusted: the farthest one
    ],
)
def test_forwarded_for_is_believed_from_trusted_proxies_only(
    trusted: list[str], peer: str | None, forwarded: list[str] | None, counted: str
) -> None:
    assert TrustedProxies(trusted).client_address(peer, forwarded) == counted


def test_the_gateways_secret_makes_its_forwarded_for_believed_and_nothing_else_does() -> None:
    proxies = TrustedProxies([])

    assert proxies.client_address("127.0.0.1", ["198.51.100.9"], peer_trusted=True) == "198.51.100.9"
    assert proxies.client_address("127.0.0.1", ["198.51.100.9"]) == "127.0.0.1"
