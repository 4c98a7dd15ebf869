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

Tracebacks too: the filter masks the traceback text of a record (``exc_info``), and code that
chains a foreign exception (``raise OurError(...) from exc``) chains
:func:`redact_exception` of it, so a secret in, say, aiortc's message for a bad SDP line is
masked wherever the traceback is printed.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse

__all__ = [
    "RedactedError",
    "RedactingFilter",
    "Secret",
    "install_log_redaction",
    "redact",
    "redact_exception",
    "register_secret",
]

_MASK = "***"
_lock = threading.Lock()
_registered: set[str] = set()
_whole_only: set[str] = set()  # registered values masked only whole
# Very short values would redact ordinary words; they are not credentials worth the noise.
_MIN_LEN = 4


def register_secret(value: str, *, pieces: bool = True) -> None:
    """Remember ``value`` so that :func:`redact` masks it wherever it appears, also as a
    server may send it back in an error: URL-encoded, or escaped in JSON. ``pieces=False``:
    only whole, not its first or last characters cut off (a TURN REST user name ends with
    the session id, which must stay readable everywhere else)."""
    if len(value) >= _MIN_LEN:
        forms = encoded_forms(value)
        with _lock:
            _registered.update(forms)
            if not pieces:
                _whole_only.update(forms)


# What JSON encoders escape that a KS or a TURN credential (base64) holds: PHP writes "\/",
# .NET "\u002B" (and "\u0026", "\u003C"... for the characters HTML cares about).
_JSON_UNICODE_ESCAPED = frozenset("+<>&'\"")


def encoded_forms(value: str) -> set[str]:
    """``value`` and how it reads URL-encoded (either hex case) and JSON-escaped."""
    quoted = urllib.parse.quote(value, safe="")
    forms = {
        value,
        quoted,
        _lower_hex(quoted, "%"),
        urllib.parse.quote_plus(value, safe=""),
        value.replace("/", "\\/"),
    }
    escaped = "".join(f"\\u{ord(c):04X}" if c in _JSON_UNICODE_ESCAPED else c for c in value)
    forms |= {escaped, _lower_hex(escaped, "\\u")}
    return forms


def _lower_hex(text: str, prefix: str) -> str:
    """``text`` with the hex digits after each ``prefix`` in lower case."""
    width = 2 if prefix == "%" else 4
    parts = text.split(prefix)
    return prefix.join([parts[0], *(p[:width].lower() + p[width:] for p in parts[1:])])


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``, and what is left of
    one cut short: its first or last :data:`_PIECE` characters or more; any JWT too."""
    with _lock:
        values = sorted(_registered, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, _MASK)
    for value in values:
        if len(value) > _PIECE and value not in _whole_only:
            text = _mask_cut(text, value)
    text = _URL_PASSWORD.sub(rf"\g<1>{_MASK}@", text)
    text = _KS_IN_REQUEST.sub(rf"\g<1>{_MASK}", text)
    return _JWT.sub(_MASK, text)


# A JWT by its shape (a JSON header "{"... in base64url, then payload and signature): a server
# issues one per session (the emulator: its log quotes a malformed request's Authorization
# header) and each would have to be registered, for ever.
_JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]+\.[\w-]*")
# A password in a URL's user info (``https://user:PASSWORD@host``, ``turn:user:PASSWORD@host``),
# and a KS in a request's Authorization header or query (a server logging a malformed request
# quotes it, registered or not: a user's real KS sent to the emulator by mistake).
_URL_PASSWORD = re.compile(r"((?:\b[a-zA-Z][\w+.-]*:(?://)?)[^\s:/@'\"]+:)[^\s@/'\"]+@")
_KS_IN_REQUEST = re.compile(r"(?i)(\bauthorization:\s*ks\s+|[?&]ks=)[^\s&'\"\\]+")


# Excerpts cut secrets: ours mask first, but others' do not (CPython's int() error message
# quotes the first 200 characters of the text it refused). A piece this long of a secret's
# start or end is masked too.
_PIECE = 8


def _mask_cut(text: str, value: str) -> str:
    """``text`` with the starts of ``value`` cut at their end, and the ends of ``value`` cut
    at their start, masked."""
    head = value[:_PIECE]
    at = text.find(head)
    while at != -1:
        end = at + _PIECE
        while end < len(text) and end - at < len(value) and text[end] == value[end - at]:
            end += 1
        text = text[:at] + _MASK + text[end:]
        at = text.find(head, at + len(_MASK))
    tail = value[-_PIECE:]
    at = text.find(tail)
    while at != -1:
        start, end = at, at + _PIECE
        while (
            start > 0 and end - start < len(value) and text[start - 1] == value[-(end - start) - 1]
        ):
            start -= 1
        text = text[:start] + _MASK + text[end:]
        at = text.find(tail, start + len(_MASK))
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


class RedactedError(Exception):
    """Stands in for an exception whose text held a secret: its type name and masked text
    (see :func:`redact_exception`)."""


def _text(exc: BaseException) -> str:
    try:
        return f"{exc!r} {exc}"
    except Exception:  # a broken __str__/__repr__: traceback prints a placeholder for it
        return ""


def _shows_secret(exc: BaseException) -> bool:
    text = _text(exc)
    return redact(text) != text


def _next_in_chain(exc: BaseException) -> BaseException | None:
    """What a traceback prints before ``exc``: its cause, else its unsuppressed context."""
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def redact_exception(exc: BaseException) -> BaseException:
    """``exc`` to chain (``raise ... from``) without a secret in the printed traceback.

    ``exc`` itself when neither it nor anything chained to it shows a registered secret;
    else a :class:`RedactedError` with its type name, masked text and traceback, chained the
    same way to the masked rest of the chain.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = _next_in_chain(current)
    if not any(_shows_secret(item) for item in chain):
        return exc
    masked: BaseException | None = None
    for item in reversed(chain):  # the root cause first
        text = redact(str(item)) if _text(item) else ""
        stand_in = RedactedError(f"{type(item).__name__}: {text}" if text else type(item).__name__)
        stand_in.__cause__ = masked
        masked = stand_in.with_traceback(item.__traceback__)
    assert masked is not None
    return masked


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets in a record's message and traceback."""

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
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when set: the traceback is printed masked.
            text = _FORMATTER.formatException(record.exc_info)
            if redact(text) != text:
                record.exc_text = redact(text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FORMATTER = logging.Formatter()


_FILTER = RedactingFilter()
_PREFIXES = ("avatar_rtc", "aiohttp", "aioice", "aiortc")


class _MaskOnTheWayUp(logging.Handler):
    """Masks each record of ``avatar_rtc.*`` on its way up to the application's handlers, and
    emits nothing. On the package logger: a logger's filters see only its own records, its
    handlers see those of every child, even a logger created after the last
    :func:`install_log_redaction`."""

    def emit(self, record: logging.LogRecord) -> None:
        pass


_PASSAGE = _MaskOnTheWayUp()
_PASSAGE.addFilter(_FILTER)
# Our package logger already has a NullHandler (avatar_rtc/__init__.py): adding this one
# changes nothing for a program that configured no logging.
logging.getLogger("avatar_rtc").addHandler(_PASSAGE)


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
