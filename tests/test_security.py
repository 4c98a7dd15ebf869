"""Security details (issue 10, item 7).

- TLS is verified by default: HTTPS (Control API, WHEP) and TURN over TLS refuse a
  certificate no trusted CA signed; the same servers work once their CA is trusted, so the
  refusal is the verification and nothing else.
- Credentials stay on their origin: a redirect to another origin, or a WHEP resource
  (``Location``) there, gets no Bearer token unless the caller opts in (``cross_origin_auth``).
- Secrets are masked in tracebacks too: exception messages, chained causes, and the
  traceback text of a log record.
- The emulator answers a malformed token with 401 (never 500), whatever is malformed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import pickle
import ssl
import traceback
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import aiohttp
import pytest
from aiohttp import web

from avatar_rtc import redact as redact_module
from avatar_rtc.api import ControlClient, RetryPolicy
from avatar_rtc.cli.main import main
from avatar_rtc.emulator import Emulator
from avatar_rtc.emulator import jwt as emulator_jwt
from avatar_rtc.errors import AvatarRTCError, ConfigurationError, NetworkError, NoCandidatesError
from avatar_rtc.fleet.runner import register_job_secrets
from avatar_rtc.http.transport import HttpTransport, check_http_url
from avatar_rtc.options import SessionOptions
from avatar_rtc.redact import RedactedError, Secret, redact, redact_exception
from avatar_rtc.rtc.connection import MediaConnection
from avatar_rtc.rtc.ice_options import IceOptions
from avatar_rtc.rtc.ice_servers import IceServer
from avatar_rtc.rtc.whep import WhepClient

from .fuzz.raw_http import Request, send
from .fuzz.server import Canned, ReplyServer
from .rtc.scripted_whep import ANSWER
from .support import require_tool
from .turn_server import make_ca_and_server_cert

TOKEN = Secret("tok-security-7c1d9e4f2a")
CREATED = Canned(201, {"Content-Type": "application/sdp", "Location": "/res/1"}, ANSWER.encode())


# --- TLS verified by default -----------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(ca, cert, key): a certificate for 127.0.0.1 signed by a CA nobody trusts."""
    require_tool("openssl")
    return make_ca_and_server_cert(tmp_path)


@pytest.fixture
async def https_url(tls_files: tuple[Path, Path, Path]) -> AsyncIterator[str]:
    """An HTTPS server on loopback answering every request like a WHEP endpoint would."""
    _, cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def reply(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/v1/avatar-session"):
            return web.json_response({"success": True, "sessionId": "s", "token": "t.t.t"})
        return CREATED.response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", reply)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_https_certificates_are_verified_by_default(
    https_url: str, tls_files: tuple[Path, Path, Path]
) -> None:
    async with ControlClient(f"{https_url}/v1/avatar-session", "ks-tls-1") as client:
        with pytest.raises(NetworkError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.create("av-1")
    whep = WhepClient(f"{https_url}/whep", max_attempts=1)
    with pytest.raises(NetworkError, match="CERTIFICATE_VERIFY_FAILED"):
        await whep.offer("v=0\r\n")
    await whep.aclose()

    trusted = ssl.create_default_context(cafile=str(tls_files[0]))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as session:
        async with ControlClient(
            f"{https_url}/v1/avatar-session", "ks-tls-1", session=session
        ) as client:
            assert (await client.create("av-1")).session_id == "s"
        assert (await WhepClient(f"{https_url}/whep", session=session).offer("v=0\r\n")).sdp


async def test_turn_over_tls_verifies_the_certificate(tls_files: tuple[Path, Path, Path]) -> None:
    """A TLS listener posing as a ``turns:`` server: the handshake is refused by default,
    and completes when its CA is given (``turn_ca_file``). It speaks no TURN, so gathering
    fails either way; only how it fails differs."""
    ca, cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handshakes: list[bool] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handshakes.append(True)  # called once the TLS handshake completed
        writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    # Credentials are registered for redaction in this process: no common words ("pass").
    url = f"turns:127.0.0.1:{port}?transport=tcp"
    turns = (IceServer(url, "tls-check-user", "tls-check-pass"),)
    async with server, ReplyServer() as whep:
        whep.answer(CREATED)
        untrusted = IceOptions(policy="relay", extra_servers=turns, gather_timeout=2.0)
        with pytest.raises(NoCandidatesError, match="CERTIFICATE_VERIFY_FAILED"):
            await MediaConnection(whep.base, ice=untrusted).connect()
        assert handshakes == []
        trusted = IceOptions(
            policy="relay", extra_servers=turns, gather_timeout=2.0, turn_ca_file=str(ca)
        )
        with pytest.raises(NoCandidatesError) as failed:
            await MediaConnection(whep.base, ice=trusted).connect()
        assert "CERTIFICATE_VERIFY_FAILED" not in str(failed.value)
        assert handshakes == [True]


# --- credentials stay on their origin --------------------------------------------------------


def _auth(server: ReplyServer) -> list[str | None]:
    return [auth for _, _, auth in server.seen]


@pytest.mark.parametrize("opt_in", [False, True])
async def test_a_redirect_to_another_origin_drops_the_bearer(opt_in: bool) -> None:
    async with ReplyServer() as home, ReplyServer() as other:
        home.answer(Canned(307, {"Location": f"{other.base}/whep"}))
        other.answer(CREATED)
        client = WhepClient(f"{home.base}/whep", bearer=TOKEN, cross_origin_auth=opt_in)
        await client.offer("v=0\r\n")
        await client.delete()
        await client.aclose()
    assert _auth(home) == [f"Bearer {TOKEN.reveal()}"]
    # The POST repeated at the other origin, then the DELETE of the resource it created there.
    expected = f"Bearer {TOKEN.reveal()}" if opt_in else None
    assert [m for m, _, _ in other.seen] == ["POST", "DELETE"]
    assert _auth(other) == [expected, expected]


@pytest.mark.parametrize("opt_in", [False, True])
async def test_a_resource_on_another_origin_gets_no_bearer(opt_in: bool) -> None:
    async with ReplyServer() as home, ReplyServer() as other:
        home.answer(Canned(201, {"Location": f"{other.base}/res/1"}, ANSWER.encode()))
        other.answer(Canned(200))
        client = WhepClient(f"{home.base}/whep", bearer=TOKEN, cross_origin_auth=opt_in)
        await client.offer("v=0\r\n")
        assert await client.delete()
        await client.aclose()
    assert _auth(other) == [f"Bearer {TOKEN.reveal()}" if opt_in else None]


@pytest.mark.parametrize("opt_in", [False, True])
async def test_a_media_connection_hands_the_opt_in_to_its_whep_client(opt_in: bool) -> None:
    """``SessionOptions.cross_origin_auth`` reaches WHEP through the MediaConnection."""
    options = SessionOptions(whep_url="http://127.0.0.1:9/whep", cross_origin_auth=opt_in)
    async with ReplyServer() as home, ReplyServer() as other:
        home.answer(Canned(307, {"Location": f"{other.base}/whep"}))
        other.answer(Canned(500))
        connection = MediaConnection(
            f"{home.base}/whep", bearer=TOKEN, cross_origin_auth=options.cross_origin_auth
        )
        with pytest.raises(AvatarRTCError):
            await connection.connect()
        await connection.close()
    assert [m for m, _, _ in other.seen][:1] == ["POST"]
    assert _auth(other)[0] == (f"Bearer {TOKEN.reveal()}" if opt_in else None)


async def test_control_api_redirects_drop_credentials_off_origin() -> None:
    """The Control API follows redirects through aiohttp, which has the same rule."""
    async with ReplyServer() as home, ReplyServer() as other:
        home.answer(Canned(307, {"Location": f"{other.base}/v1/avatar-session/create"}))
        other.answer(Canned(200, {}, b'{"success": true, "sessionId": "s", "token": "t.t.t"}'))
        async with ControlClient(f"{home.base}/v1/avatar-session", "ks-redirected-1") as client:
            await client.create("av-1")
    assert _auth(home) == ["KS ks-redirected-1"] and _auth(other) == [None]


# A KS-shaped secret (base64: + / =), and how servers send one back in an error.
ECHOED_KS = "djJ8MTIzNDU2fGFi+Y2RlZmdo/aWprbG1u+b3BxcnN0/dXZ3eHl6==" + "QUJDREVGR0hJSktMTU5P"
ECHOES = {
    "url-encoded": urllib.parse.quote(ECHOED_KS, safe="").encode(),
    "url-encoded, lower-case hex": urllib.parse.quote(ECHOED_KS, safe="")
    .replace("%2B", "%2b")
    .replace("%2F", "%2f")
    .replace("%3D", "%3d")
    .encode(),
    "json, slashes escaped (PHP)": json.dumps({"detail": ECHOED_KS}).replace("/", "\\/").encode(),
    "json, + escaped (.NET)": json.dumps({"detail": ECHOED_KS}).replace("+", "\\u002B").encode(),
}


@pytest.mark.parametrize("form", sorted(ECHOES))
async def test_a_ks_a_server_echoes_encoded_is_masked(form: str) -> None:
    async with ReplyServer() as server:
        server.answer(Canned(401, {"Content-Type": "application/json"}, ECHOES[form]))
        async with ControlClient(
            f"{server.base}/v1/avatar-session", ECHOED_KS, retry=RetryPolicy(max_attempts=1)
        ) as client:
            with pytest.raises(AvatarRTCError) as info:
                await client.create("av-1")
    shown = _shown(info.value)
    assert info.value.status == 401 and "***" in shown  # type: ignore[attr-defined]
    for piece in ("aWprbG1u", "dXZ3eHl6", "QUJDREVGR0hJSktMTU5P"):  # from its middle and end
        assert piece not in shown, shown


def test_a_ks_argparse_refuses_is_not_printed_back(capsys: pytest.CaptureFixture[str]) -> None:
    ks = "ks-in-the-wrong-place-5c2e"
    for argv in (["--ks", ks, "probe"], ["probe", f"--turn-={ks}"], ["emulator", "--bearer", ks]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and "error:" in err and "***" in err
        assert ks not in err, argv


def test_a_ks_that_cannot_be_a_header_is_refused_before_sending() -> None:
    """A KS read from a file with its line break would make aiohttp refuse the request
    (ValueError) with the KS in the chained traceback; it is refused at once instead."""
    with pytest.raises(ConfigurationError, match="control characters"):
        ControlClient("http://127.0.0.1:1/v1/avatar-session", "ks-from-a-file\n")


async def test_the_transport_keeps_cookies_and_tokens_home() -> None:
    async with ReplyServer() as other:
        other.answer(Canned(204))
        http = HttpTransport(timeout=5.0, home="http://127.0.0.1:1/api")
        headers = {"Authorization": "Bearer x-1234", "Cookie": "sid=1", "Accept": "*/*"}
        await http.request("GET", f"{other.base}/x", label="probe", headers=headers)
        await http.aclose()
    assert _auth(other) == [None]


# --- secrets masked in tracebacks ------------------------------------------------------------


def _shown(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


async def test_a_network_error_and_its_cause_are_masked() -> None:
    secret = Secret("tok-traceback-3b8e5d")
    http = HttpTransport(timeout=5.0)
    with pytest.raises(NetworkError) as info:  # aiohttp's InvalidURL quotes the URL
        await http.request("POST", f"http://[{secret.reveal()}/x", label="probe")
    await http.aclose()
    assert secret.reveal() not in _shown(info.value)
    assert isinstance(info.value.__cause__, RedactedError)
    assert str(info.value.__cause__).startswith("InvalidUrlClientError: ")  # what it stands for


def test_redact_exception_masks_the_chain_and_keeps_clean_exceptions() -> None:
    secret = Secret("tok-chain-5a7c9e1b")
    try:
        try:
            raise KeyError(f"no such key {secret.reveal()}")
        except KeyError as inner:
            raise ValueError("while parsing") from inner
    except ValueError as exc:
        masked = redact_exception(exc)
    text = _shown(masked)
    assert secret.reveal() not in text and "***" in text
    assert "KeyError" in text and "while parsing" in text
    clean = ValueError("nothing secret")
    assert redact_exception(clean) is clean


def test_tracebacks_in_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret("tok-logged-9d2f4a6c")
    try:
        raise RuntimeError(f"failed with {secret.reveal()}")
    except RuntimeError:
        logging.getLogger("avatar_rtc.any.module").exception("something failed")
    assert "something failed" in caplog.text and "RuntimeError" in caplog.text
    assert secret.reveal() not in caplog.text


async def test_a_jwt_in_a_malformed_requests_log_is_masked_unregistered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp logs a malformed request with its bytes, Authorization header included. The
    emulator issues a JWT per session, registered nowhere (a standalone emulator never wraps
    them): masked by their shape. One of them was in the emulator's ERROR log."""
    token = emulator_jwt.encode({"exp": 4e9, "sid": "never-registered"}, b"some-key")
    assert token.startswith("eyJ")
    async with Emulator(media_enabled=False) as emu:
        path = "/v1/avatar-session/any/keep-alive"
        control = b"Bearer " + token.encode() + b"\x01"
        with caplog.at_level(logging.DEBUG):
            assert await send(emu.port, Request("POST", path, control)) == 400
    assert "Bearer ***" in caplog.text
    assert token not in caplog.text and token.split(".")[1] not in caplog.text


async def test_an_unknown_ks_in_a_malformed_requests_log_is_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A user's real KS sent to the emulator by mistake is registered nowhere: masked by its
    place (Authorization header, ks= query) in aiohttp's log of a malformed request."""
    ks = "djJ8MTIzNDU2fHVua25vd24ta3MtNzc0MQ"
    async with Emulator(media_enabled=False) as emu:
        with caplog.at_level(logging.DEBUG):
            header = b"KS " + ks.encode() + b"\x01"
            path = "/v1/avatar-session/any/keep-alive"
            assert await send(emu.port, Request("POST", path, header)) == 400
            query = f"/v1/avatar-session/any/keep-alive?ks={ks} \x01"
            assert await send(emu.port, Request("POST", query, b"KS x")) == 400
    assert "KS ***" in caplog.text
    assert ks not in caplog.text and ks[:12] not in caplog.text


def test_a_password_in_a_url_is_masked_wherever_it_is_quoted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    password = "url-pass-0b7e5d"
    for url in (
        f"https://viewer:{password}@127.0.0.1:99999/w",
        f"turn:u:{password}@127.0.0.1:3478",
    ):
        assert password not in redact(url) and "***@127.0.0.1" in redact(url)
    with pytest.raises(ConfigurationError) as info:
        check_http_url("--api-url", f"http://admin:{password}@127.0.0.1:99999/v1")
    assert password not in str(info.value) and "admin:***@" in str(info.value)
    # The CLI's refusal of a malformed --turn URL quoted it whole.
    assert main(["probe", "--turn", f"turn:u:{password}@127.0.0.1:3479"]) == 2
    err = capsys.readouterr().err
    assert "malformed ICE server URL" in err and password not in err
    # Plain URLs keep what they say.
    for text in ("https://example.com/a@b", "turn:127.0.0.1:3478?transport=tcp", "12:30:45@noon"):
        assert redact(text) == text


def test_a_turn_rest_user_name_leaves_its_session_id_readable() -> None:
    """The service's TURN user name is "<expiry>:<session id>": masked whole, but its tail
    (the session id, in every other message) is not a cut piece of a secret."""
    session_id = "0b1c2d3e4f5a6b7c8d9e"
    IceServer("turn:127.0.0.1:3478", f"1765000000:{session_id}", "hmac-credential-9f8e7d6c")
    line = f"keep-alive of session {session_id} failed; user 1765000000:{session_id}"
    assert redact(line) == f"keep-alive of session {session_id} failed; user ***"
    assert redact("hmac-credential-9f8e") == "***"  # a credential's cut piece still is


def test_a_ks_from_the_environment_typed_as_an_argument_is_not_printed_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ks = "env-ks-typed-again-3d9a"
    monkeypatch.setenv("AVATAR_KS", ks)
    with pytest.raises(SystemExit) as info:
        main(["probe", ks])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "unrecognized arguments: ***" in err and ks not in err


def test_a_fleet_worker_masks_the_turn_credentials_it_was_handed() -> None:
    """Workers get the options pickled: an unpickled IceServer registered nothing."""
    server = IceServer("turn:127.0.0.1:3478", "worker-turn-user-41", "worker-turn-cred-41")
    options = SessionOptions(ice=IceOptions(extra_servers=(server,)))
    clear = pickle.dumps(options)
    with mock.patch.object(redact_module, "_registered", set()):
        unpickled = pickle.loads(clear)
        assert redact("worker-turn-cred-41") == "worker-turn-cred-41"  # the fault fixed here
        register_job_secrets(unpickled)
        assert redact("cred worker-turn-cred-41 user worker-turn-user-41") == "cred *** user ***"


# --- the emulator refuses malformed tokens with 401 ------------------------------------------


def _bearer(header: str, claims: str, signature: str = "sig") -> bytes:
    """``Bearer`` and a compact JWS of these JSON texts (signed or not)."""

    def segment(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    return f"Bearer {segment(header)}.{segment(claims)}.{signature}".encode()


_SIGNED_ELSEWHERE = emulator_jwt.encode({"exp": 4e9}, b"not-the-emulator-key")
MALFORMED: dict[str, bytes] = {
    "empty": b"Bearer ",
    "scheme only": b"Bearer",
    "huge": b"Bearer " + b"a" * 6000,  # aiohttp takes header lines up to 8190 bytes
    "binary": b"Bearer \xff\xfe\x80\xa0",  # not UTF-8 (aiohttp hands it over as surrogates)
    "non-ASCII": "Bearer tökén".encode(),
    "bad base64": b"Bearer !!!.@@@.###",
    "bad JSON": _bearer("{not json", "{}"),
    "too deep JSON": _bearer("[" * 5000, "{}"),
    "claims not an object": _bearer('{"alg": "HS256"}', "[]"),
    "wrong alg": _bearer('{"alg": "none"}', '{"exp": 4e9}', ""),
    "wrong key": f"Bearer {_SIGNED_ELSEWHERE}".encode(),
    "KS scheme": b"KS abc",
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_the_emulator_answers_a_malformed_token_with_401(name: str) -> None:
    """And a control character makes the request itself malformed: 400 from aiohttp's HTTP
    parser (no handler runs), never 500 either."""
    async with Emulator(media_enabled=False) as emu:
        async with ControlClient(emu.api_url, emu.ks, retry=RetryPolicy(max_attempts=1)) as c:
            handle = await c.create("av-1")
        path = f"/v1/avatar-session/{handle.session_id}/keep-alive"
        assert await send(emu.port, Request("POST", path, MALFORMED[name])) == 401
        assert (
            await send(emu.port, Request("POST", path, b"Bearer " + handle.token.reveal().encode()))
            == 200
        )
        control = MALFORMED[name] + b"\x01"
        assert await send(emu.port, Request("POST", path, control)) == 400
        ks_path = "/v1/avatar-session/create"
        bad_ks = MALFORMED[name].replace(b"Bearer", b"KS", 1)
        assert await send(emu.port, Request("POST", ks_path, bad_ks)) == 401
