"""The built-in avatar catalog served at ``POST /v1/catalog-item/list``.

Ids look like the live service's 24-char hex ids; the CLI and examples use
:data:`DEFAULT_VISUAL_ID` / :data:`DEFAULT_VOICE_ID`. The emulator accepts any visual id
at create (the live service accepts both catalog item ids and avatar ids).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["CATALOG", "DEFAULT_VISUAL_ID", "DEFAULT_VOICE_ID", "list_items"]

DEFAULT_VISUAL_ID = "e0a1e0a1e0a1e0a1e0a10001"
DEFAULT_VOICE_ID = "e0a1e0a1e0a1e0a1e0a1f001"

_IMAGES = "https://example.invalid/avatar-rtc-emulator"


def _visual(item_id: str, name: str, created: str, **attrs: str) -> dict[str, Any]:
    return {
        "itemId": item_id,
        "type": "Visual",
        "createdAt": created,
        "attributes": {"visual": {"name": name, **attrs}},
        "imageUrl": f"{_IMAGES}/{item_id}.png",
        "loadingVideo": f"{_IMAGES}/{item_id}.mp4",
    }


def _voice(
    item_id: str, name: str, created: str, language: str, description: str
) -> dict[str, Any]:
    return {
        "itemId": item_id,
        "type": "Voice",
        "createdAt": created,
        "attributes": {"voice": {"name": name, "description": description, "language": language}},
        "voiceSampleUrl": f"{_IMAGES}/{item_id}.mp3",
    }


CATALOG: tuple[dict[str, Any], ...] = (
    _visual(
        DEFAULT_VISUAL_ID,
        "Emulated Ada",
        "2025-01-01T00:00:00Z",
        genderPresentation="feminine",
        skinTone="medium",
        ageGroup="adult",
        hairColor="brown",
        clothing="casual",
        background="studio",
    ),
    _visual(
        "e0a1e0a1e0a1e0a1e0a10002",
        "Emulated Bo",
        "2025-02-01T00:00:00Z",
        genderPresentation="masculine",
        skinTone="light",
        ageGroup="adult",
        hairColor="black",
        clothing="business",
        background="office",
    ),
    _voice(
        DEFAULT_VOICE_ID,
        "Emulated Voice (en)",
        "2025-01-01T00:00:00Z",
        "en",
        "Synthetic English voice of the emulator",
    ),
    _voice(
        "e0a1e0a1e0a1e0a1e0a1f002",
        "Emulated Voice (es)",
        "2025-02-01T00:00:00Z",
        "es",
        "Synthetic Spanish voice of the emulator",
    ),
)


def list_items(body: dict[str, Any]) -> dict[str, Any]:
    """The ``{objects, totalCount}`` answer to a list request body (filter, pager, orderBy)."""
    filter_ = body.get("filter")
    type_equal = filter_.get("typeEqual") if isinstance(filter_, dict) else None
    items = [i for i in CATALOG if type_equal is None or i["type"] == type_equal]
    order_by = body.get("orderBy")
    if isinstance(order_by, str) and order_by.lstrip("+-") == "createdAt":
        items.sort(key=lambda i: str(i["createdAt"]), reverse=order_by.startswith("-"))
    pager = body.get("pager")
    offset, limit = 0, 500
    if isinstance(pager, dict):
        offset = _int(pager.get("offset"), 0)
        limit = _int(pager.get("limit"), limit)
    return {"objects": items[offset : offset + max(limit, 0)], "totalCount": len(items)}


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, float) and not math.isfinite(value):  # JSON 1e999 is infinity
        return default
    return max(int(value), 0)
