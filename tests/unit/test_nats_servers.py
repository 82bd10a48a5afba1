"""A NATS URL list: each entry a URL nats-py accepts, the first entry's credentials shared."""

from __future__ import annotations

from stockctl.settings import mask_url
from stockctl.wire.nats_urls import nats_options, nats_servers


def test_one_url_is_a_list_of_one() -> None:
    assert nats_servers("nats://u:p@127.0.0.1:4222") == ["nats://u:p@127.0.0.1:4222"]


def test_bare_entries_take_the_first_entrys_scheme_and_credentials() -> None:
    assert nats_servers("nats://u:p%40x@h1:4222, h2:4223,tls://v:q@h3:4224,") == [
        "nats://u:p%40x@h1:4222",
        "nats://u:p%40x@h2:4223",
        "tls://v:q@h3:4224",  # an entry of its own keeps what it says
    ]
    assert nats_servers("h1:1,h2:2") == ["nats://h1:1", "nats://h2:2"]


def test_a_list_is_masked_entry_by_entry() -> None:
    assert mask_url("nats://u:secret@h1:1,nats://u:secret@h2:2") == "nats://u:***@h1:1,nats://u:***@h2:2"


def test_options_carry_the_credentials_to_every_server_the_cluster_announces() -> None:
    assert nats_options("nats://u:p@h1:1,h2:2") == {
        "servers": ["nats://u:p@h1:1", "nats://u:p@h2:2"],
        "user": "u",
        "password": "p",
    }
    assert nats_options("nats://tok@h1:1") == {"servers": ["nats://tok@h1:1"], "token": "tok"}
    assert nats_options("h1:1") == {"servers": ["nats://h1:1"]}
