"""Fault injection: answer the next N calls of an endpoint with an error, add latency."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ENDPOINTS", "Fault", "FaultInjector"]

# The operation names shared by faults, counters and the Control API client's errors.
ENDPOINTS = frozenset(
    {"create", "init-client", "say-text", "say-audio", "interrupt", "keep-alive", "end", "catalog"}
)

_DEFAULT_ERRORS = {
    400: "Bad request",
    401: "Invalid or expired token",
    403: "Kaltura Session not authorized",
    404: "Session not found",
    410: "Session ended",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
    504: "Gateway timeout",
}


@dataclass
class Fault:
    """One armed fault: ``remaining`` more calls get ``status`` with ``error``."""

    status: int
    error: str
    remaining: int
    retry_after: float | None = None


class FaultInjector:
    """Armed faults and latencies per endpoint (see :data:`ENDPOINTS`)."""

    def __init__(self) -> None:
        self._faults: dict[str, list[Fault]] = {}
        self._latency: dict[str | None, float] = {}

    @staticmethod
    def _check(endpoint: str) -> None:
        # A typo would silently arm nothing and make a test pass for the wrong reason.
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")

    def fail_next(
        self,
        endpoint: str,
        status: int,
        times: int = 1,
        error: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``endpoint`` with ``status``.

        Faults queue up: ``fail_next("create", 503); fail_next("create", 429)`` answers the
        first call 503 and the second 429. ``retry_after`` adds a ``Retry-After`` header.
        """
        self._check(endpoint)
        if times < 1:
            raise ValueError("times must be >= 1")
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        message = error if error is not None else _DEFAULT_ERRORS.get(status, "Error")
        self._faults.setdefault(endpoint, []).append(Fault(status, message, times, retry_after))

    def set_latency(self, endpoint: str | None, seconds: float) -> None:
        """Delay every call of ``endpoint`` (``None``: every endpoint) by ``seconds``.

        An endpoint's own latency replaces the global one; ``seconds=0`` removes it.
        """
        if endpoint is not None:
            self._check(endpoint)
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        if seconds == 0:
            self._latency.pop(endpoint, None)
        else:
            self._latency[endpoint] = seconds

    def clear(self) -> None:
        """Disarm every fault and latency."""
        self._faults.clear()
        self._latency.clear()

    def latency(self, endpoint: str) -> float:
        """The delay to apply to a call of ``endpoint``."""
        return self._latency.get(endpoint, self._latency.get(None, 0.0))

    def take(self, endpoint: str) -> Fault | None:
        """Consume one armed fault of ``endpoint``, if any."""
        queue = self._faults.get(endpoint)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.pop(0)
        return fault

    def pending(self, endpoint: str) -> int:
        """How many calls of ``endpoint`` will still fail."""
        return sum(f.remaining for f in self._faults.get(endpoint, []))
