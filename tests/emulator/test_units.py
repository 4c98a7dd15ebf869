"""Unit tests of the emulator's JWT and fault modules."""

from __future__ import annotations

import base64
import json
import time

import pytest

from avatar_rtc.emulator import jwt
from avatar_rtc.emulator.auth import parse_authorization
from avatar_rtc.emulator.faults import FaultInjector

SECRET = b"k" * 32


def test_jwt_round_trip() -> None:
    token = jwt.encode({"sub": "s", "exp": time.time() + 60}, SECRET)
    assert jwt.decode(token, SECRET)["sub"] == "s"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t + "x",
        lambda t: t.rsplit(".", 1)[0] + ".",
        lambda t: "a.b",
        lambda t: jwt.encode({"sub": "s", "exp": time.time() + 60}, b"other" * 8),
        lambda t: jwt.encode({"sub": "s", "exp": time.time() - 1}, SECRET),
        lambda t: jwt.encode({"sub": "s"}, SECRET),
    ],
)
def test_jwt_rejects(mutate: object) -> None:
    token = jwt.encode({"sub": "s", "exp": time.time() + 60}, SECRET)
    with pytest.raises(jwt.JwtError):
        jwt.decode(mutate(token), SECRET)  # type: ignore[operator]


def test_jwt_rejects_alg_none() -> None:
    def seg(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    token = f"{seg({'alg': 'none'})}.{seg({'sub': 's', 'exp': time.time() + 60})}."
    with pytest.raises(jwt.JwtError):
        jwt.decode(token, SECRET)


def test_parse_authorization() -> None:
    assert parse_authorization("KS abc") == ("ks", "abc")
    assert parse_authorization("  bearer   tok ") == ("bearer", "tok")
    assert parse_authorization("KS") is None
    assert parse_authorization(None) is None


def test_fault_queue_order_and_pending() -> None:
    faults = FaultInjector()
    faults.fail_next("end", 503, times=2)
    faults.fail_next("end", 429, retry_after=1.5)
    assert faults.pending("end") == 3
    taken = [faults.take("end") for _ in range(4)]
    assert [f.status if f else None for f in taken] == [503, 503, 429, None]
    assert taken[2] is not None and taken[2].retry_after == 1.5


def test_emulator_in_a_thread_for_sync_code() -> None:
    import urllib.request

    from avatar_rtc.emulator import Emulator

    with Emulator(media_enabled=False).in_thread() as emu:
        request = urllib.request.Request(
            f"{emu.api_url}/create",
            data=json.dumps({"visualConfig": {"id": "x"}}).encode(),
            headers={"Authorization": f"KS {emu.ks}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert json.loads(resp.read())["success"] is True
        assert emu.counters.sessions_created == 1
