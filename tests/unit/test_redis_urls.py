"""Redis URLs: one server as it is, a cluster by its seed nodes, a bad one refused in one line."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from stockctl.settings import Settings
from stockctl.wire.masking import mask_url
from stockctl.wire.redis_urls import ClusterUrl, parse_redis_url


def test_a_cluster_url_names_its_nodes_and_one_password_for_all() -> None:
    url = "redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"
    assert parse_redis_url(url) == ClusterUrl(
        (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)), None, "s3cret", False
    )


def test_tls_users_percent_escapes_and_default_port() -> None:
    parsed = parse_redis_url("rediss+cluster://ops:p%40ss@h1,h2:7001/0")
    assert parsed == ClusterUrl((("h1", 6379), ("h2", 7001)), "ops", "p@ss", True)


def test_one_server_is_not_a_cluster() -> None:
    assert parse_redis_url("redis://:pw@127.0.0.1:6379/0") is None
    assert parse_redis_url("rediss://h:6380/2") is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://:pw@h1:7000/3", "database 0 only"),
        ("redis+cluster://:pw@h1:notaport", "bad port"),
        ("redis+cluster://:pw@", "at least one host"),
        ("redis://:pw@h1:6379,h2:6379", "redis+cluster://"),
        ("http://h1:6379", "unknown Redis URL scheme"),
    ],
)
def test_bad_urls_are_refused_by_settings_saying_why(url: str, says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        Settings(redis_url=url)


def test_the_password_of_a_cluster_url_is_masked() -> None:
    assert mask_url("redis+cluster://:s3cret@h1:7000,h2:7001") == "redis+cluster://:***@h1:7000,h2:7001"
