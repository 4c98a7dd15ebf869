"""ICE URL parsing, IceOptions and the TURN endpoint list (no network)."""

from __future__ import annotations

import ssl

import pytest

from avatar_rtc.api.models import TurnConfig
from avatar_rtc.errors import ConfigurationError
from avatar_rtc.redact import Secret, redact
from avatar_rtc.rtc.ice_options import IceOptions
from avatar_rtc.rtc.ice_servers import IceServer, IceUrl, TurnPorts, parse_ice_url
from avatar_rtc.rtc.multi_turn import TurnEndpoint, split_servers

TURN = TurnConfig(url="turns:turn.example.com:443/", username=Secret("kaltura-user"),
                  credential=Secret("avatar-cred-1"))  # fmt: skip


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("turn:h:80?transport=udp", IceUrl("turn", "h", 80, "udp")),
        ("turn:h:80?transport=tcp", IceUrl("turn", "h", 80, "tcp")),
        ("turns:h:443?transport=tcp", IceUrl("turns", "h", 443, "tls")),
        ("turn:1.2.3.4", IceUrl("turn", "1.2.3.4", 3478, "udp")),
        ("turns:h", IceUrl("turns", "h", 5349, "tls")),
        ("turn:[::1]:3478?transport=tcp", IceUrl("turn", "::1", 3478, "tcp")),
        ("stun:stun.example.com:19302", IceUrl("stun", "stun.example.com", 19302, None)),
    ],
)
def test_parse_ice_url(url: str, expected: IceUrl) -> None:
    assert parse_ice_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["http://h", "turn:", "turns:h?transport=udp", "turn:h?transport=sctp", "stun:h?transport=udp"],
)
def test_parse_ice_url_rejects(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_ice_url(url)


def test_four_urls_in_service_order_then_extras() -> None:
    extra = IceServer("stun:stun.example.com:3478")
    options = IceOptions(policy="relay", turn=TURN, extra_servers=(extra,))
    assert [s.url for s in options.servers()] == [
        "turn:turn.example.com:80?transport=udp",
        "turn:turn.example.com:443?transport=udp",
        "turn:turn.example.com:80?transport=tcp",
        "turns:turn.example.com:443?transport=tcp",
        "stun:stun.example.com:3478",
    ]
    stun, turns = split_servers(options.servers())
    assert stun == [("stun.example.com", 3478)]
    assert [(t.port, t.transport) for t in turns] == [
        (80, "udp"), (443, "udp"), (80, "tcp"), (443, "tls"),
    ]  # fmt: skip


def test_test_ports() -> None:
    options = IceOptions(turn=TURN, turn_ports=TurnPorts(udp=(3478, 3479), tcp=3478, tls=5349))
    assert [s.url.split("?")[0] for s in options.servers()] == [
        "turn:turn.example.com:3478", "turn:turn.example.com:3479",
        "turn:turn.example.com:3478", "turns:turn.example.com:5349",
    ]  # fmt: skip


def test_no_implicit_servers() -> None:
    assert IceOptions().servers() == []


def test_credentials_are_masked_everywhere() -> None:
    options = IceOptions(turn=TURN, extra_servers=(IceServer("turn:x", "link-user", "link-pass"),))
    text = repr(options) + repr(options.servers()) + str(options.servers()[0])
    endpoint = TurnEndpoint.from_server(options.servers()[0])
    text += repr(endpoint)
    for secret in ("avatar-cred-1", "link-pass"):
        assert secret not in text
    assert "link-user" not in repr(TurnEndpoint.from_server(options.servers()[-1]))
    # Credentials that did not come from a Secret are registered for log redaction too
    # (nothing but them in the text: other tests of this process register theirs).
    assert redact("link-user:link-pass") == "***:***"


def test_tls_is_verified_by_default() -> None:
    context = IceOptions().ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    insecure = IceOptions(turn_tls_verify=False).ssl_context()
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname


@pytest.mark.parametrize(
    "kwargs",
    [
        {"policy": "none"},
        {"gather_timeout": 0},
        {"relay_grace": -1},
        {"extra_servers": (IceServer("turn:h?transport=quic"),)},
        {"gather_timeout": float("nan")},
        {"host_addresses": ("999.1.1.1",)},
        {"host_addresses": ("127.0.0.1", "localhost")},
    ],
)
def test_invalid_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        IceOptions(**kwargs)  # type: ignore[arg-type]
