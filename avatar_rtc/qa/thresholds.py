"""The limits a report is judged against: defaults from the standards, overridable by TOML.

Defaults: no freeze, no pause, no black run after the first frame (video that stops while the
audio goes on is a freeze or a pause), no audio dropout, lip sync
not outside the BT.1359 acceptability band (``warn`` passes, ``fail`` breaches, ``unknown``
is reported but breaches nothing); live sessions: time to first frame <= 3 s, say -> first
audible speech <= 2.5 s for the slowest turn (a turn never heard breaches it). Loudness and
frame-rate limits are off unless given; ``None`` (not settable from TOML) turns a limit off.
So is ``max_missing``, the stretches of 1 s or more without any audio (``audio.missing``): a
sender may send no audio packets at all while the avatar is silent (the service's behaviour is
not documented); set ``max_missing = 0`` where audio must flow throughout (the emulator's does).

A TOML file sets any of them, by section::

    [video]
    max_freezes = 0
    max_pauses = 0
    max_black = 0
    min_fps = 20.0

    [audio]
    max_dropouts = 0
    max_missing = 0
    min_integrated_lufs = -30.0
    max_integrated_lufs = -10.0
    max_true_peak_dbtp = -1.0

    [lipsync]   # ms, positive: the sound comes first
    pass_lead_ms = 45.0
    pass_lag_ms = 125.0
    warn_lead_ms = 90.0
    warn_lag_ms = 185.0
    min_confidence = 0.4

    [live]
    max_ttff_s = 3.0
    max_say_to_speech_s = 2.5
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from .lipsync import SyncBands

__all__ = ["Thresholds", "load_thresholds", "thresholds_from_mapping"]


@dataclass(frozen=True)
class Thresholds:
    max_freezes: int = 0
    max_pauses: int = 0
    max_black: int = 0
    min_fps: float | None = None
    max_dropouts: int = 0
    max_missing: int | None = None
    min_integrated_lufs: float | None = None
    max_integrated_lufs: float | None = None
    max_true_peak_dbtp: float | None = None
    lipsync: SyncBands = field(default_factory=SyncBands)
    max_ttff_s: float | None = 3.0
    max_say_to_speech_s: float | None = 2.5


_SECTIONS: dict[str, tuple[str, ...]] = {
    "video": ("max_freezes", "max_pauses", "max_black", "min_fps"),
    "audio": (
        "max_dropouts",
        "max_missing",
        "min_integrated_lufs",
        "max_integrated_lufs",
        "max_true_peak_dbtp",
    ),
    "live": ("max_ttff_s", "max_say_to_speech_s"),
    "lipsync": tuple(f.name for f in dataclasses.fields(SyncBands)),
}
_COUNTS = {"max_freezes", "max_pauses", "max_black", "max_dropouts", "max_missing"}
_POSITIVE = {"min_fps", "max_ttff_s", "max_say_to_speech_s"}  # 0 or less: never met
_BAND_EDGES = {"pass_lead_ms", "pass_lag_ms", "warn_lead_ms", "warn_lag_ms"}


def load_thresholds(path: str | Path) -> Thresholds:
    """Defaults overridden by the TOML file at ``path`` (:class:`ConfigurationError` if bad)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigurationError(f"cannot read thresholds {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"thresholds {path}: {exc}") from exc
    return thresholds_from_mapping(data)


def thresholds_from_mapping(data: dict[str, Any]) -> Thresholds:
    top: dict[str, Any] = {}
    bands: dict[str, Any] = {}
    for section, values in data.items():
        keys = _SECTIONS.get(section)
        if keys is None or not isinstance(values, dict):
            raise ConfigurationError(f"thresholds: unknown section [{section}]")
        for key, value in values.items():
            if key not in keys:
                raise ConfigurationError(f"thresholds: unknown key {key!r} in [{section}]")
            (bands if section == "lipsync" else top)[key] = _number(section, key, value)
    sync = SyncBands(**bands)
    for side in ("lead", "lag"):
        passes, warns = getattr(sync, f"pass_{side}_ms"), getattr(sync, f"warn_{side}_ms")
        if passes > warns:
            raise ConfigurationError(
                f"thresholds: [lipsync] pass_{side}_ms ({passes:g}) is beyond "
                f"warn_{side}_ms ({warns:g}): the pass band lies inside the warn band"
            )
    return Thresholds(**top, lipsync=sync)


def _number(section: str, key: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"thresholds: [{section}] {key} must be a number")
    if key in _COUNTS:
        if not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"thresholds: [{section}] {key} must be a count >= 0")
        return value
    number = float(value)
    if not math.isfinite(number):
        raise ConfigurationError(f"thresholds: [{section}] {key} must be a finite number")
    if key in _POSITIVE and number <= 0:
        raise ConfigurationError(f"thresholds: [{section}] {key} must be > 0")
    if key in _BAND_EDGES and number < 0:
        raise ConfigurationError(f"thresholds: [{section}] {key} must be >= 0 (ms off sync)")
    if key == "min_confidence" and not 0 <= number <= 1:
        raise ConfigurationError(f"thresholds: [{section}] {key} must be within 0..1")
    return number
