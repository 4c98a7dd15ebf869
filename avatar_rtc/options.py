"""SessionOptions: the one home of what a session connects to and how.

:class:`~avatar_rtc.session.AvatarSession` and its blocking twin
:class:`~avatar_rtc.sync_session.SyncAvatarSession` take the same object, and the command line
builds one from its flags. Frozen: derive a variant with ``dataclasses.replace(options, ...)``
(which mypy checks field by field).
Light on purpose (no aiortc, no PyAV): the command line imports it before any media code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .api.keepalive import DEFAULT_KEEP_ALIVE_INTERVAL
from .errors import ConfigurationError
from .http.transport import check_http_url
from .redact import Secret
from .rtc.ice_options import IceOptions
from .rtc.read_pacer import MAX_READ_INTERVAL
from .rtc.reconnect import ReconnectPolicy
from .rtc.video_codecs import RECEIVABLE_VIDEO_CODECS

__all__ = ["SessionOptions"]


@dataclass(frozen=True)
class SessionOptions:
    """What a session connects to and how (every field optional).

    - Service mode (default): ``api_url``/``ks`` (``None``: ``$AVATAR_API_URL``/``$AVATAR_KS``,
      read when the session starts); ``avatar_id`` (``None``: ``$AVATAR_ID``, then the
      catalog's first visual); ``voice_id`` (``None``: ``$AVATAR_VOICE_ID``, else the
      service's default).
    - Bare WHEP mode: ``whep_url`` (and ``bearer`` if the endpoint wants one); no Control API,
      so no ``say``/``interrupt``. Excludes ``api_url`` and ``ks``.
    - ``ks`` and ``bearer`` are :class:`~avatar_rtc.redact.Secret`\\ s (a plain string is
      wrapped at once), so neither shows in a ``repr`` or a log line.
    - ``ice``: the service's TURN server is added to it (policy, host addresses and extra
      servers stay the caller's); on loopback pass ``IceOptions(host_addresses=("127.0.0.1",))``.
    - ``video_codecs``: what the offer lists, in order of preference; default every codec we
      can receive, whatever a recording's container (``record`` re-encodes what it cannot
      hold). A list the server cannot send raises :class:`CodecNegotiationError` at start.
    - ``connect_timeout``: bound on each of the two phases of starting (seconds): the Control
      API's calls (catalog, create and init-client together), then connecting the media. A
      create given up on is waited for up to ``api.session_scope.CREATE_GRACE`` (5 s) more,
      to end what it opened (and to report what it answered, if it did).
    - ``keep_alive_interval``: seconds between the Control API keep-alives.
    - ``detect_speech``: decode the audio to raise ``speaking_started``/``speaking_ended``
      (and to make ``wait_idle`` possible).
    - ``reconnect``: when media counts as lost and how it is brought back (watchdog timeout,
      backoff, attempts; :class:`~avatar_rtc.rtc.reconnect.ReconnectPolicy`);
      ``ReconnectPolicy.disabled()`` makes the first loss final;
      ``ReconnectPolicy(new_session_on_not_found=True)`` replaces a service session that
      ended under us (WHEP 404) with a new one instead of failing.
    - ``keyframe_wait``: after a video loss the sender does not repair (its keyframes lost,
      PLI unanswered), seconds before frames are decoded without a keyframe (artefacts over
      the stale picture, as browsers do) rather than a frozen picture; ``None``: wait for a
      keyframe however long it takes (frozen meanwhile, but never a damaged frame).
    - ``max_playout_delay``: hold decoded video up to this long (seconds) so frames that came
      late (a retransmission, a keyframe through a slow link) play out evenly, as a browser
      does (:mod:`avatar_rtc.media.playout`); ``None`` (default): each frame is handed out as
      soon as it is decoded, for the lowest latency. Recordings are not delayed.
    - ``decode_video_on_loop``: decode the video on the event loop instead of a thread of its
      own. The thread (default) keeps decoding and colour conversion (~0.5 ms a 512x512 frame)
      off the loop and can use another core; where many sessions share one core it costs more
      than it saves (measured, 6 decoding sessions in one process: 3.5 instead of 3.8 % of a
      core per session, medians of 5 runs), so the fleet's workers turn it on.
    - ``read_interval``: while media flows, read the media sockets every this many seconds
      (at most 0.2) instead of at each packet's arrival (``0``, default). A receiver's CPU is
      mostly its wake-ups: ``0.1`` halved a copy-mode recording's CPU and cut a decoding
      session's by 35-45 % (:mod:`avatar_rtc.rtc.read_pacer`), for up to that much more latency
      on every frame (and jitter figures that include it). For recordings, frames fed to
      a model in batches, and fleets; not for latency measurements. No effect under uvloop.
    - ``cross_origin_auth``: send the WHEP ``bearer`` to another origin too (a redirect, a
      resource ``Location`` elsewhere); off by default, the token stays on its origin.

    Inconsistent or out-of-range values raise :class:`ConfigurationError` (a ``ValueError``).
    """

    api_url: str | None = None
    ks: Secret | None = None
    avatar_id: str | None = None
    voice_id: str | None = None
    whep_url: str | None = None
    bearer: Secret | None = None
    ice: IceOptions = field(default_factory=IceOptions)
    video_codecs: tuple[str, ...] = RECEIVABLE_VIDEO_CODECS
    connect_timeout: float = 20.0
    keep_alive_interval: float = DEFAULT_KEEP_ALIVE_INTERVAL
    detect_speech: bool = True
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    cross_origin_auth: bool = False
    keyframe_wait: float | None = 1.0
    max_playout_delay: float | None = None
    decode_video_on_loop: bool = False
    read_interval: float = 0.0

    def __post_init__(self) -> None:
        for name in ("ks", "bearer"):
            value: object = getattr(self, name)
            if isinstance(value, str):  # untyped callers: never keep a credential in the clear
                object.__setattr__(self, name, Secret(value))
        if self.whep_url is not None:
            if self.api_url is not None or self.ks is not None:
                raise ConfigurationError("whep_url (bare WHEP mode) excludes api_url and ks")
            check_http_url("whep_url", self.whep_url)
        if self.api_url is not None:
            check_http_url("api_url", self.api_url)
        codecs = tuple(dict.fromkeys(str(codec).upper() for codec in self.video_codecs))
        unknown = [codec for codec in codecs if codec not in RECEIVABLE_VIDEO_CODECS]
        if not codecs or unknown:
            raise ConfigurationError(
                f"video_codecs {tuple(self.video_codecs)!r}: name one or more of "
                f"{', '.join(RECEIVABLE_VIDEO_CODECS)}"
            )
        object.__setattr__(self, "video_codecs", codecs)
        # `not x > 0`, not `x <= 0`: NaN fails it too (infinity is "never")
        if not self.connect_timeout > 0 or not self.keep_alive_interval > 0:
            raise ConfigurationError("connect_timeout and keep_alive_interval must be > 0")
        if self.keyframe_wait is not None and not self.keyframe_wait > 0:
            raise ConfigurationError("keyframe_wait must be > 0 seconds (or None: never)")
        if self.max_playout_delay is not None and not self.max_playout_delay > 0:
            raise ConfigurationError("max_playout_delay must be > 0 seconds (or None: off)")
        if not 0 <= self.read_interval <= MAX_READ_INTERVAL:
            raise ConfigurationError(
                f"read_interval must be 0 (off) to {MAX_READ_INTERVAL:g} seconds"
            )
