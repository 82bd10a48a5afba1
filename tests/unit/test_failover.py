"""FailoverHttp over real sockets: a request moves on only when it could not have been acted on."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from stockctl.client.failover import FailoverHttp
from stockctl.instance.infra import free_port


class _Counting(BaseHTTPRequestHandler):
    hits: list[str] = []

    def _answer(self) -> None:
        self.hits.append(self.command)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def live() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_Counting,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent() -> Iterator[str]:
    """Accepts connections (the kernel does) and never answers: a request sent there is lost."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_a_refused_gateway_is_passed_over_for_reads_and_commands(live: tuple[str, list[str]]) -> None:
    url, hits = live
    http = FailoverHttp(f"http://127.0.0.1:{free_port()}, {url}/", timeout=2)
    assert http.request("POST", "/x").status_code == 200
    assert http.request("GET", "/x").status_code == 200
    assert hits == ["POST", "GET"] and http.base_url == url


def test_a_command_whose_answer_was_lost_is_not_sent_to_the_next_gateway(
    silent: str, live: tuple[str, list[str]]
) -> None:
    url, hits = live
    with pytest.raises(httpx.ReadTimeout):
        FailoverHttp([silent, url], timeout=0.5).request("POST", "/orders")
    assert hits == []  # sent once, to the gateway that may have applied it
    # A read is safe to repeat: it moves on.
    assert FailoverHttp([silent, url], timeout=0.5).request("GET", "/orders").status_code == 200
    assert hits == ["GET"]


def test_no_url_is_a_usage_error() -> None:
    from stockctl.errors import UsageError

    with pytest.raises(UsageError, match="no gateway URL"):
        FailoverHttp(" , ")
