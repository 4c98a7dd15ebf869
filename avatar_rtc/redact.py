"""Secrets that never reach a log line, a repr or an exception message.

A :class:`Secret` wraps a KS, a session JWT or a TURN credential. Its ``repr``/``str``
are masked and the raw value is only available through :meth:`Secret.reveal`, which the
code calls at the single place the value goes on the wire. Every secret created is
also registered, so :class:`RedactingFilter` can scrub it from third-party log records
(aiohttp, aioice, aiortc) as defence in depth.

Library users need no call: the filter is installed as soon as the media stack is loaded
(importing ``avatar_rtc.rtc.connection``, which every session does, after aiortc and aioice),
and the CLI installs it too. It matters there: aioice logs each TURN request at DEBUG with its
USERNAME attribute, the TURN credential's user name (tests/test_logging_defaults.py). A program
that imports other libraries whose log records may carry one of our secrets can call
:func:`install_log_redaction` again afterwards (it only adds what is missing).
"""

from __future__ import annotations

import logging
import threading

__all__ = ["RedactingFilter", "Secret", "install_log_redaction", "redact", "register_secret"]

_MASK = "***"
_lock = threading.Lock()
_registered: set[str] = set()
# Very short values would redact ordinary words; they are not credentials worth the noise.
_MIN_LEN = 4


def register_secret(value: str) -> None:
    """Remember ``value`` so that :func:`redact` masks it wherever it appears."""
    if len(value) >= _MIN_LEN:
        with _lock:
            _registered.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    with _lock:
        values = sorted(_registered, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, _MASK)
    return text


class Secret:
    """A credential whose value is hidden from ``repr``, ``str`` and formatting."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        """The raw value, for the one place it is sent on the wire."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # A bad format/args pair: let the handler report it as logging does, rather
            # than raise out of a filter into the code that logged.
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_FILTER = RedactingFilter()
_PREFIXES = ("avatar_rtc", "aiohttp", "aioice", "aiortc")


def install_log_redaction() -> None:
    """Attach :class:`RedactingFilter` to every logger of our stack that exists now.

    Logger filters do not apply to records propagated from child loggers, so the filter
    is attached to each existing logger under the prefixes. Idempotent.
    """
    manager = logging.Logger.manager
    names = [n for n in list(manager.loggerDict) if n.split(".")[0] in _PREFIXES]
    for name in [*_PREFIXES, *names]:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
