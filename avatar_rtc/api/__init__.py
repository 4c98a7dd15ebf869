"""Step 1 of the data path: the avatar service's Control API."""

from ..http.retry import RetryPolicy, call_with_retry, is_retryable, parse_retry_after
from .audio_duration import audio_duration
from .client import ControlClient
from .control_calls import DEFAULT_BASE_URL, ENV_API_URL, ENV_KS, CatalogType, ControlCalls
from .keepalive import DEFAULT_KEEP_ALIVE_INTERVAL, KeepAlive, KeepAliveState
from .models import CatalogItem, ClientConfig, SessionHandle, TurnConfig
from .session_scope import LiveSession, open_session
from .speech_input import guess_audio_type, new_turn_id
from .text_chunks import DEFAULT_MAX_CHUNK_CHARS, chunk_text

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_KEEP_ALIVE_INTERVAL",
    "DEFAULT_MAX_CHUNK_CHARS",
    "ENV_API_URL",
    "ENV_KS",
    "CatalogItem",
    "CatalogType",
    "ClientConfig",
    "ControlCalls",
    "ControlClient",
    "KeepAlive",
    "KeepAliveState",
    "LiveSession",
    "RetryPolicy",
    "SessionHandle",
    "TurnConfig",
    "audio_duration",
    "call_with_retry",
    "chunk_text",
    "guess_audio_type",
    "is_retryable",
    "new_turn_id",
    "open_session",
    "parse_retry_after",
]
