"""The outbound-URL policy: URLs are checked as httpx parses them, control characters refused,
resolved addresses must be public unless explicitly allowed, and the connection goes to the
address that was checked (a real loopback HTTP server receives it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from service.config import Settings
from service.errors import OutboundRefused, OutboundUnreachable
from service.outbound import OutboundPolicy, system_resolver

LOOPBACK = OutboundPolicy(allow_loopback=True)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A loopback HTTP server that records the headers of every request it answers."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(dict(self.headers))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], seen
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://local\thost:18500/tab", "a tab (U+0009) at position 13"),
        ("http://localhost:18500/a\r\nX-Injected: 1", "a carriage return (U+000D)"),
        ("http://localhost/\nx", "a line feed (U+000A)"),
        ("http://localhost/a b", "a space (U+0020)"),
        ("http://localhost/\u202eexe.txt", "RIGHT-TO-LEFT OVERRIDE"),
        ("http://localhost:99999/hook", "not a valid URL"),
        ("http://localhost:0/hook", "not a valid URL"),
        ("ftp://localhost/hook", "http:// or https://"),
        ("/relative/hook", "http:// or https://"),
        ("http://user:pw@localhost/hook", "credentials"),
        ("http://example.com/hook", "'example.com' is not among the allowed hosts"),
    ],
)
def test_urls_that_would_not_be_sent_as_written_are_refused(url: str, words: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        LOOPBACK.check_url(url, allowed_hosts=["localhost", "LOCALHOST."])
    assert words in refused.value.detail


def test_a_good_url_is_returned_as_httpx_parses_it() -> None:
    parsed = LOOPBACK.check_url(
        "https://Hooks.Example.COM./x?y=1", allowed_hosts=["hooks.example.com"]
    )
    assert (parsed.scheme, parsed.host, parsed.path, parsed.query) == (
        "https",
        "hooks.example.com.",
        "/x",
        b"y=1",
    )
    assert LOOPBACK.check_url("http://localhost:8080/") is not None  # no allow-list given


@pytest.mark.parametrize(
    ("address", "what"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("192.168.0.10", "a private address"),
        ("fd00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("100.64.0.1", "a reserved or non-public address"),
        ("0.0.0.0", "a private address"),
        ("224.0.0.1", "a multicast address"),
    ],
)
def test_non_public_addresses_are_refused_by_default(address: str, what: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        OutboundPolicy().resolve(address, 80)  # an IP literal resolves to itself, offline
    assert f"resolves to {address}, {what}" in refused.value.detail


def test_public_addresses_and_explicit_exceptions_are_allowed() -> None:
    assert OutboundPolicy().resolve("93.184.215.14", 443) == "93.184.215.14"
    assert OutboundPolicy().resolve("2606:4700::6810:84e5", 443) == "2606:4700::6810:84e5"
    assert LOOPBACK.resolve("127.0.0.1", 80) == "127.0.0.1"
    assert LOOPBACK.resolve("::ffff:127.0.0.1", 80) == "::ffff:127.0.0.1"
    with pytest.raises(OutboundRefused):
        LOOPBACK.resolve("10.1.2.3", 80)  # loopback only
    settings = Settings(outbound_allowed_networks=["10.0.0.0/8"])
    policy = OutboundPolicy.from_settings(settings)
    assert policy.resolve("10.1.2.3", 80) == "10.1.2.3"
    with pytest.raises(OutboundRefused):
        policy.resolve("192.168.0.1", 80)


def test_a_name_with_one_refused_address_is_refused() -> None:
    policy = OutboundPolicy(resolver=lambda host, port: ["93.184.215.14", "10.0.0.7"])
    with pytest.raises(OutboundRefused) as refused:
        policy.resolve("mixed.test", 80)
    assert "10.0.0.7, a private address" in refused.value.detail


def test_a_name_that_does_not_resolve_is_unreachable_not_refused() -> None:
    with pytest.raises(OutboundUnreachable):
        OutboundPolicy(resolver=system_resolver).resolve("no-such-host.invalid", 80)


def test_bad_allowed_networks_stop_the_settings() -> None:
    with pytest.raises(ValueError, match="not a network"):
        Settings(outbound_allowed_networks=["10.0.0.0/33"])


def test_the_connection_goes_to_the_address_that_was_checked(
    receiver: tuple[int, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the first answer (loopback, allowed here) is checked and connected to;
    the name never resolves through the system (it does not exist there), and when the next
    answer is a private address, the next request is refused before any connection."""
    port, seen = receiver
    answers = iter([["127.0.0.1"], ["10.9.8.7"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # never used: no proxy from env
    policy = OutboundPolicy(allow_loopback=True, resolver=rebinding)
    before = len(seen)
    with policy.client(timeout=10) as client:
        response = client.post(f"http://rebind.test:{port}/hook", content=b"{}")
        assert response.status_code == 204
        with pytest.raises(OutboundRefused, match=r"10\.9\.8\.7, a private address"):
            client.post(f"http://rebind.test:{port}/hook", content=b"{}")
    assert calls == ["rebind.test", "rebind.test"]
    assert len(seen) == before + 1
    assert seen[-1]["Host"] == f"rebind.test:{port}"
    with pytest.raises(httpx.ConnectError):  # without the pin the name goes nowhere
        httpx.post(f"http://rebind.test:{port}/hook", content=b"{}", trust_env=False, timeout=5)
