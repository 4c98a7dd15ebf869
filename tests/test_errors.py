"""One exception hierarchy, each kind of failure with its own documented exit code."""

from __future__ import annotations

import re

import pytest

from avatar_rtc import errors
from avatar_rtc.errors import (
    AuthenticationError,
    AvatarRTCError,
    ConfigurationError,
    ConnectError,
    ConnectTimeoutError,
    MediaLostError,
    NetworkError,
    NoMediaError,
    PermissionDeniedError,
    RequestTimeoutError,
    ServerError,
    ServiceUnreachableError,
    ThresholdError,
    TransportError,
    WhepError,
)

EXPECTED = {
    AvatarRTCError: 1,
    ConfigurationError: 2,
    NoMediaError: 3,
    ThresholdError: 4,
    AuthenticationError: 5,
    TransportError: 6,
    ConnectError: 7,
}


@pytest.mark.parametrize(("error", "code"), EXPECTED.items())
def test_each_kind_of_failure_has_its_own_exit_code(error: type[AvatarRTCError], code: int) -> None:
    assert issubclass(error, AvatarRTCError)
    assert error.exit_code == code


def test_subclasses_inherit_the_exit_code_of_their_kind() -> None:
    assert PermissionDeniedError.exit_code == AuthenticationError.exit_code == 5
    assert NetworkError.exit_code == RequestTimeoutError.exit_code == 6
    assert ConnectTimeoutError.exit_code == WhepError.exit_code == 7
    assert ServerError.exit_code == 1
    # The sender gone (its WHEP server refusing): still "media stopped arriving".
    assert issubclass(ServiceUnreachableError, MediaLostError)
    assert ServiceUnreachableError.exit_code == NoMediaError.exit_code == 3


def test_403_is_caught_as_an_authentication_error() -> None:
    with pytest.raises(AuthenticationError):
        raise PermissionDeniedError("not an admin KS", status=403)


def test_no_media_is_still_a_connect_error() -> None:
    # Code that caught ConnectError("media stopped arriving") keeps working.
    assert issubclass(NoMediaError, ConnectError)


def test_the_exit_code_table_in_the_docstring_matches_the_classes() -> None:
    doc = errors.__doc__ or ""
    rows = re.findall(r"^(\d)\s+:class:`(\w+)`", doc, flags=re.MULTILINE)
    documented = {getattr(errors, name): int(code) for code, name in rows}
    assert documented == EXPECTED
