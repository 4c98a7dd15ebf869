"""ControlClient against the embedded emulator over loopback HTTP: every endpoint, every error."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web

from avatar_rtc.api import ControlClient, SessionHandle, TurnConfig, audio_duration
from avatar_rtc.api.audio_mp3 import MP3_SAMPLE_RATE
from avatar_rtc.emulator import Emulator
from avatar_rtc.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NetworkError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    SessionEndedError,
    SessionNotFoundError,
)
from avatar_rtc.redact import Secret

from .conftest import AVATAR_ID, FAST_RETRY, VOICE_ID

# --- success paths ---------------------------------------------------------------


async def test_create_sends_visual_and_voice_config(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID, VOICE_ID, speed=1.2, language="en")
    assert handle.session_id and isinstance(handle.token, Secret)
    session = emu.session(handle.session_id)
    assert session.visual_id == AVATAR_ID
    assert session.voice_config == {"id": VOICE_ID, "speed": 1.2, "language": "en"}
    assert emu.counters.calls["create"] == 1


async def test_create_without_voice_sends_no_voice_config(
    emu: Emulator, client: ControlClient
) -> None:
    handle = await client.create(AVATAR_ID)
    assert emu.session(handle.session_id).voice_config is None


async def test_create_on_bare_path_with_documented_avatar_id(emu: Emulator) -> None:
    async with ControlClient(
        emu.api_url, emu.ks, create_path="", avatar_id_field="avatarId"
    ) as client:
        handle = await client.create(AVATAR_ID)
    assert emu.session(handle.session_id).visual_id == AVATAR_ID


@pytest.fixture
async def page_form_service() -> AsyncIterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A service as the create-session page documents it: ``POST /v1/avatar-session`` with
    ``visualConfig.avatarId`` (``/create``: 404); the requests it saw."""
    seen: list[tuple[str, dict[str, Any]]] = []

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((request.path, body))
        if request.path.endswith("/create") or "avatarId" not in body["visualConfig"]:
            return web.json_response({"success": False, "error": "Not found"}, status=404)
        return web.json_response({"success": True, "sessionId": "s1", "token": "t.t.t"})

    app = web.Application()
    app.router.add_post("/v1/avatar-session", create)
    app.router.add_post("/v1/avatar-session/create", create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1/avatar-session", seen
    finally:
        await runner.cleanup()


async def test_create_falls_back_to_the_create_pages_form_on_a_404(
    page_form_service: tuple[str, list[tuple[str, dict[str, Any]]]],
) -> None:
    url, seen = page_form_service
    async with ControlClient(url, "dummy-ks") as client:
        handle = await client.create(AVATAR_ID, VOICE_ID)
    assert handle.session_id == "s1"
    assert [path for path, _ in seen] == ["/v1/avatar-session/create", "/v1/avatar-session"]
    assert seen[0][1]["visualConfig"] == {"id": AVATAR_ID}  # first as working clients do
    assert seen[1][1]["visualConfig"] == {"id": AVATAR_ID, "avatarId": AVATAR_ID}
    assert seen[1][1]["voiceConfig"] == {"id": VOICE_ID}


async def test_create_404_at_both_paths_is_an_api_error_naming_both(
    page_form_service: tuple[str, list[tuple[str, dict[str, Any]]]],
) -> None:
    url, seen = page_form_service
    wrong = url.replace("/v1/avatar-session", "/v2/avatar-session")  # neither path exists
    async with ControlClient(wrong, "dummy-ks") as client:
        with pytest.raises(ApiError) as caught:
            await client.create(AVATAR_ID)
    assert type(caught.value) is ApiError and caught.value.status == 404  # not "no session"
    assert f"at {wrong}/create and at {wrong}" in str(caught.value)
    # an explicit path is taken as given: no second try
    async with ControlClient(url, "dummy-ks", create_path="", avatar_id_field="id") as client:
        with pytest.raises(SessionNotFoundError):
            await client.create(AVATAR_ID)
    assert [path for path, _ in seen] == ["/v1/avatar-session"]


async def test_base_url_and_ks_from_environment(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVATAR_API_URL", emu.api_url + "/")
    monkeypatch.setenv("AVATAR_KS", emu.ks)
    async with ControlClient() as client:
        assert client.base_url == emu.api_url
        await client.create(AVATAR_ID)
    assert emu.counters.sessions_created == 1


async def test_missing_ks_is_a_configuration_error(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AVATAR_KS", raising=False)
    async with ControlClient(emu.api_url) as client:
        with pytest.raises(ConfigurationError, match="AVATAR_KS"):
            await client.create(AVATAR_ID)
    assert emu.counters.calls["create"] == 0


async def test_init_client_returns_whep_url_and_turn(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    config = await client.init_client(handle)
    assert config.whep_url == emu.whep_url(handle.session_id)
    assert config.turn is not None
    sent = emu.session(handle.session_id).turn
    assert sent is not None
    assert config.turn.url == sent["url"] and config.turn.host == sent["url"]
    assert config.turn.username.reveal() == sent["username"]
    assert config.turn.credential.reveal() == sent["credential"]


async def test_init_client_with_a_turn_url() -> None:
    turn = TurnConfig("turns:turn.example.com:443/", Secret("user-1234"), Secret("cred-5678"))
    async with (
        Emulator(media_enabled=False, turn=turn) as emu,
        ControlClient(emu.api_url, emu.ks) as client,
    ):
        config = await client.init_client(await client.create(AVATAR_ID))
    assert config.turn == turn
    assert config.turn.host == "turn.example.com"


async def test_say_text_short_text_is_one_final_call(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID, VOICE_ID)
    turn_id = await client.say_text(handle, "Hello world.")
    assert turn_id.startswith("turn-")
    calls = emu.session(handle.session_id).say_text_calls
    assert [(c.text, c.turn_id, c.is_final) for c in calls] == [("Hello world.", turn_id, True)]


async def test_default_turn_id_has_the_docs_shape(client: ControlClient, emu: Emulator) -> None:
    handle = await client.create(AVATAR_ID, VOICE_ID)
    first = await client.say_text(handle, "One.")
    second = await client.say_text(handle, "Two.")
    assert first != second
    prefix, millis, suffix = first.split("-")
    assert prefix == "turn" and millis.isdigit() and len(suffix) == 9 and suffix.isalnum()


async def test_long_text_is_chunked_under_one_turn(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID, VOICE_ID)
    text = " ".join(f"This is sentence number {n}." for n in range(40))
    turn_id = await client.say_text(handle, text, turn_id="turn-mine", max_chunk_chars=120)
    assert turn_id == "turn-mine"
    calls = emu.session(handle.session_id).say_text_calls
    assert len(calls) > 5
    assert {c.turn_id for c in calls} == {"turn-mine"}
    assert [c.is_final for c in calls] == [False] * (len(calls) - 1) + [True]
    assert all(len(c.text) <= 120 and c.text.endswith(".") for c in calls)
    assert " ".join(c.text for c in calls) == text


async def test_say_audio_wav_is_sent_as_mp3_of_its_duration(
    emu: Emulator, client: ControlClient, wav_file: Path
) -> None:
    handle = await client.create(AVATAR_ID)
    turn_id = await client.say_audio(handle, wav_file)
    [call] = emu.session(handle.session_id).say_audio_calls
    assert call.turn_id == turn_id
    assert call.duration == pytest.approx(1.5)
    assert (call.filename, call.content_type) == ("tone.mp3", "audio/mpeg")
    with av.open(io.BytesIO(call.audio)) as container:
        stream = container.streams.audio[0]
        assert (container.format.name, stream.codec_context.name) == ("mp3", "mp3float")
        assert (stream.rate, stream.layout.name) == (MP3_SAMPLE_RATE, "mono")
    assert audio_duration(call.audio) == pytest.approx(1.5, abs=0.001)


async def test_say_audio_of_a_wav_named_mp3_is_converted(
    emu: Emulator, client: ControlClient, wav_bytes: bytes, tmp_path: Path
) -> None:
    named = tmp_path / "speech.mp3"
    named.write_bytes(wav_bytes)
    handle = await client.create(AVATAR_ID)
    await client.say_audio(handle, named)
    [call] = emu.session(handle.session_id).say_audio_calls
    assert (call.filename, call.content_type) == ("speech.mp3", "audio/mpeg")
    assert call.audio != wav_bytes and call.audio[:3] == b"ID3"  # encoded, not the WAV
    assert call.duration == pytest.approx(1.5)


async def test_say_audio_without_convert_sends_the_file_as_is(
    emu: Emulator, client: ControlClient, wav_file: Path, wav_bytes: bytes
) -> None:
    handle = await client.create(AVATAR_ID)
    await client.say_audio(handle, wav_file, convert=False)
    [call] = emu.session(handle.session_id).say_audio_calls
    assert call.duration == pytest.approx(1.5)
    assert call.audio == wav_bytes
    assert (call.filename, call.content_type) == ("tone.wav", "audio/wav")


async def test_say_audio_mp3_bytes_with_given_duration(
    emu: Emulator, client: ControlClient, mp3_bytes: bytes
) -> None:
    handle = await client.create(AVATAR_ID)
    await client.say_audio(handle, mp3_bytes, duration=2.25, turn_id="t-1")
    [call] = emu.session(handle.session_id).say_audio_calls
    assert (call.turn_id, call.duration) == ("t-1", 2.25)
    assert (call.filename, call.content_type) == ("audio", "audio/mpeg")


@pytest.mark.parametrize("duration", [0.0, -1.0, float("nan")])
async def test_say_audio_with_a_duration_that_is_no_duration_is_refused_typed(
    emu: Emulator, client: ControlClient, mp3_bytes: bytes, duration: float
) -> None:
    handle = await client.create(AVATAR_ID)
    with pytest.raises(ConfigurationError, match="say-audio"):  # was a bare ValueError
        await client.say_audio(handle, mp3_bytes, duration=duration)
    assert emu.session(handle.session_id).say_audio_calls == []


async def test_say_audio_mp3_path_measures_duration(
    emu: Emulator, client: ControlClient, mp3_file: Path, mp3_bytes: bytes
) -> None:
    handle = await client.create(AVATAR_ID)
    await client.say_audio(handle, str(mp3_file), content_type="audio/mp3")
    [call] = emu.session(handle.session_id).say_audio_calls
    assert call.duration == pytest.approx(2.0, abs=0.06)
    assert call.content_type == "audio/mp3"
    assert call.audio == mp3_bytes  # MP3 already: not re-encoded


@pytest.mark.parametrize("duration", [0.0, -1.0, float("nan"), float("inf"), 1e-9])
async def test_say_audio_rejects_non_positive_duration(
    emu: Emulator, client: ControlClient, wav_file: Path, duration: float
) -> None:
    handle = await client.create(AVATAR_ID)
    with pytest.raises(ValueError, match="duration"):
        await client.say_audio(handle, wav_file, duration=duration)
    assert emu.counters.calls["say-audio"] == 0


async def test_say_audio_of_a_file_that_is_not_audio_names_it(
    emu: Emulator, client: ControlClient, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.wav"
    notes.write_text("not a sound")
    handle = await client.create(AVATAR_ID)
    with pytest.raises(ConfigurationError, match=r"say-audio notes\.wav: not readable audio"):
        await client.say_audio(handle, notes)
    assert emu.counters.calls["say-audio"] == 0


async def test_interrupt_keep_alive_end(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    await client.interrupt(handle)
    await client.keep_alive(handle)
    assert await client.end(handle) is True
    assert emu.session(handle.session_id).interrupts == 1
    assert emu.counters.keep_alives == 1
    assert emu.counters.sessions_ended == 1


@pytest.mark.parametrize("ended_status", [404, 410])
async def test_end_of_an_ended_session_is_false(ended_status: int) -> None:
    async with Emulator(media_enabled=False, ended_end_status=ended_status) as emu:
        async with ControlClient(emu.api_url, emu.ks, retry=FAST_RETRY) as client:
            handle = await client.create(AVATAR_ID)
            assert await client.end(handle) is True
            assert await client.end(handle) is False
        assert emu.counters.calls["end"] == 2  # 404/410 is not retried


async def test_list_catalog(emu: Emulator, client: ControlClient) -> None:
    visuals = await client.list_catalog("Visual")
    voices = await client.list_catalog("Voice")
    assert AVATAR_ID in [v.item_id for v in visuals]
    assert VOICE_ID in [v.item_id for v in voices]
    assert {v.type for v in visuals} == {"Visual"} and {v.type for v in voices} == {"Voice"}
    ada = next(v for v in visuals if v.item_id == AVATAR_ID)
    assert ada.name == "Emulated Ada"
    assert ada.attributes["visual"]["background"] == "studio"
    assert ada.raw["itemId"] == AVATAR_ID


# --- errors ----------------------------------------------------------------------


def _assert_error(
    info: pytest.ExceptionInfo[ApiError], status: int, error: str, endpoint: str
) -> None:
    exc = info.value
    assert (exc.status, exc.error, exc.endpoint) == (status, error, endpoint)
    assert str(status) in str(exc) and error in str(exc)


async def test_400_text_is_required(client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID, VOICE_ID)
    with pytest.raises(BadRequestError) as info:
        await client.say_text(handle, "  ")
    _assert_error(info, 400, "Text is required", "say-text")


async def test_401_invalid_ks(emu: Emulator) -> None:
    async with ControlClient(emu.api_url, "not-the-right-ks") as client:
        with pytest.raises(AuthenticationError) as info:
            await client.create(AVATAR_ID)
        _assert_error(info, 401, "Invalid Kaltura Session", "create")
        with pytest.raises(AuthenticationError):
            await client.list_catalog("Visual")


async def test_401_invalid_token(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    forged = SessionHandle(handle.session_id, Secret("forged.jwt.token"))
    with pytest.raises(AuthenticationError) as info:
        await client.init_client(forged)
    _assert_error(info, 401, "Invalid or expired token", "init-client")


async def test_403_non_admin_ks(emu: Emulator) -> None:
    async with ControlClient(emu.api_url, emu.non_admin_ks) as client:
        with pytest.raises(PermissionDeniedError) as info:
            await client.create(AVATAR_ID)
    _assert_error(info, 403, "Kaltura Session not authorized", "create")


async def test_404_session_not_found(client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    unknown = SessionHandle("no-such-session", handle.token)
    with pytest.raises(SessionNotFoundError) as info:
        await client.interrupt(unknown)
    _assert_error(info, 404, "Session not found", "interrupt")


async def test_410_session_ended(client: ControlClient, wav_file: Path) -> None:
    handle = await client.create(AVATAR_ID, VOICE_ID)
    await client.end(handle)
    with pytest.raises(SessionEndedError) as info:
        await client.say_text(handle, "Too late.")
    _assert_error(info, 410, "Session ended", "say-text")
    with pytest.raises(SessionEndedError):
        await client.say_audio(handle, wav_file)
    with pytest.raises(SessionEndedError):
        await client.keep_alive(handle)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_a_server_error(emu: Emulator, client: ControlClient, status: int) -> None:
    emu.faults.fail_next("create", status, error="boom")
    with pytest.raises(ServerError) as info:
        await client.create(AVATAR_ID)
    _assert_error(info, status, "boom", "create")


async def test_429_carries_retry_after(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    emu.faults.fail_next("interrupt", 429, retry_after=7)
    with pytest.raises(RateLimitedError) as info:
        await client.interrupt(handle)
    assert info.value.retry_after == 7.0


async def test_timeout_is_request_timeout_error(emu: Emulator) -> None:
    emu.faults.set_latency("create", 1.0)
    async with ControlClient(emu.api_url, emu.ks, timeout=0.2) as client:
        with pytest.raises(RequestTimeoutError, match="create"):
            await client.create(AVATAR_ID)


async def test_connection_refused_is_network_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with ControlClient(f"http://127.0.0.1:{port}/v1/avatar-session", "ks-abcdef") as client:
        with pytest.raises(NetworkError, match="create"):
            await client.create(AVATAR_ID)


async def test_non_json_error_body_is_excerpted(emu: Emulator) -> None:
    # The API path is fine but a bogus origin answers HTML: aiohttp's own 404 page.
    async with ControlClient(emu.base_url + "/nowhere", emu.ks) as client:
        with pytest.raises(ApiError) as info:
            await client.create(AVATAR_ID)
    assert info.value.error and "404" in info.value.error


async def test_shared_http_session_is_not_closed(emu: Emulator) -> None:
    async with aiohttp.ClientSession() as http:
        async with ControlClient(emu.api_url, emu.ks, session=http) as client:
            await client.create(AVATAR_ID)
        assert not http.closed


# --- retries only where safe ---------------------------------------------------------


async def test_keep_alive_503_is_retried(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    emu.faults.fail_next("keep-alive", 503, times=2)
    await client.keep_alive(handle)
    assert emu.counters.calls["keep-alive"] == 3
    assert emu.counters.keep_alives == 1


async def test_end_and_catalog_are_retried(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    emu.faults.fail_next("end", 502)
    emu.faults.fail_next("catalog", 429)
    assert await client.end(handle) is True
    assert await client.list_catalog("Voice")
    assert emu.counters.calls["end"] == 2 and emu.counters.calls["catalog"] == 2


async def test_retries_give_up_after_max_attempts(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    emu.faults.fail_next("keep-alive", 500, times=10)
    with pytest.raises(ServerError):
        await client.keep_alive(handle)
    assert emu.counters.calls["keep-alive"] == FAST_RETRY.max_attempts


async def test_keep_alive_4xx_is_not_retried(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    emu.faults.fail_next("keep-alive", 400)
    with pytest.raises(BadRequestError):
        await client.keep_alive(handle)
    assert emu.counters.calls["keep-alive"] == 1


@pytest.mark.parametrize("endpoint", ["create", "init-client", "say-text", "say-audio"])
async def test_unsafe_endpoints_are_never_retried(
    emu: Emulator, client: ControlClient, wav_file: Path, endpoint: str
) -> None:
    handle = await client.create(AVATAR_ID, VOICE_ID)
    emu.counters.calls.clear()
    emu.faults.fail_next(endpoint, 503)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "create": lambda: client.create(AVATAR_ID),
        "init-client": lambda: client.init_client(handle),
        "say-text": lambda: client.say_text(handle, "Hello."),
        "say-audio": lambda: client.say_audio(handle, wav_file),
    }
    with pytest.raises(ServerError):
        await calls[endpoint]()
    assert emu.counters.calls[endpoint] == 1


async def test_retry_after_is_honoured(emu: Emulator, client: ControlClient) -> None:
    handle = await client.create(AVATAR_ID)
    emu.faults.fail_next("keep-alive", 503, retry_after=1)
    started = time.monotonic()
    await client.keep_alive(handle)
    # FAST_RETRY alone would wait at most 0.05 s.
    assert time.monotonic() - started >= 0.95
    assert emu.counters.calls["keep-alive"] == 2
