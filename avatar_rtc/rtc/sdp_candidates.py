"""ICE candidates in SDP: the answer's, wherever the server put them, and trickled ones.

RFC 8843 and JSEP let an answerer list the candidates of a BUNDLE group in any of its m=
sections (some servers list them only in the first, the bundle-tagged one): all of them
belong to the one shared transport. aiortc 1.16 hands that transport only the candidates of
the *last* bundled section it walks, so with a relay-only path nothing may be left to pair
with. :func:`normalize_answer` rewrites the answer before aiortc reads it: every bundled
section gets the union of the group's candidates (and the tagged section's ICE/DTLS transport
attributes where it has none), so whatever order the server uses, every candidate reaches ICE.

End-of-candidates is kept only when some candidate can pair with ours (UDP: aioice has no
ICE-TCP). With TCP candidates alone, the only way in is the server's own checks reaching our
relay candidates (peer-reflexive): ICE must keep waiting for those instead of failing at once.

Trickled candidates (WHEP PATCH, ``application/trickle-ice-sdpfrag``, RFC 8840) are read and
written by :func:`parse_sdpfrag` / :func:`build_sdpfrag`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "SDPFRAG_TYPE",
    "AnswerCandidates",
    "SdpFragment",
    "build_sdpfrag",
    "candidate_key",
    "local_sdpfrag",
    "normalize_answer",
    "parse_sdpfrag",
    "split_sections",
    "unpairable_addresses",
    "well_formed",
]

SDPFRAG_TYPE = "application/trickle-ice-sdpfrag"

# Transport attributes shared by a BUNDLE group (RFC 8843 section 7.1.3); copied from the
# tagged section into bundled sections that lack them.
_TRANSPORT_ATTRS = ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=setup:")


@dataclass(frozen=True)
class AnswerCandidates:
    """What :func:`normalize_answer` found: the shared transport's candidates (SDP values,
    without ``a=candidate:``), whether the server signalled their end, and ICE-lite."""

    sdp: str
    candidates: tuple[str, ...]
    end_of_candidates: bool
    ice_lite: bool
    bundled_mids: tuple[str, ...]

    @property
    def udp(self) -> tuple[str, ...]:
        return tuple(c for c in self.candidates if _transport(c) == "udp")

    @property
    def unpairable(self) -> tuple[tuple[str, int], ...]:
        """Addresses of candidates we cannot pair with (TCP): TURN permissions go there."""
        return unpairable_addresses(self.candidates)


def unpairable_addresses(candidates: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """(address, port) of the non-UDP ``candidates`` (aioice pairs UDP only)."""
    found: dict[tuple[str, int], None] = {}
    for value in candidates:
        fields = _fields(value)
        if _transport(value) != "udp" and len(fields) >= 6 and _port(fields[5]) is not None:
            found[(fields[4], int(fields[5]))] = None
    return tuple(found)


def candidate_key(value: str) -> tuple[str, str, str, str]:
    """(component, transport, address, port): one candidate however often it is listed."""
    fields = _fields(value)
    return fields[1], fields[2].lower(), fields[4].lower(), fields[5]


def normalize_answer(sdp: str) -> AnswerCandidates:
    """Spread the BUNDLE group's candidates over every bundled m= section (see module doc)."""
    eol = "\r\n" if "\r\n" in sdp else "\n"
    session, sections = split_sections(sdp)
    bundle = _bundle_mids(session)
    ice_lite = any(line.strip() == "a=ice-lite" for line in session)
    bundled = [s for s in sections if _mid(s) in bundle] if bundle else sections[:1]
    if not bundled:
        return AnswerCandidates(sdp, (), False, ice_lite, ())

    candidates: dict[tuple[str, str, str, str], str] = {}
    end = False
    for section in bundled:
        for line in section:
            if line.startswith("a=candidate:"):
                value = line[len("a=candidate:") :].strip()
                if well_formed(value):  # malformed ones dropped: aiortc would refuse them all
                    candidates.setdefault(candidate_key(value), value)
            elif line.strip() == "a=end-of-candidates":
                end = True
    values = tuple(candidates.values())
    signal_end = end and any(_transport(c) == "udp" for c in values)

    tagged = _tagged(bundled, bundle)
    shared = [line for line in tagged if line.startswith(_TRANSPORT_ATTRS)]
    for section in bundled:
        kept = [
            line
            for line in section
            if not line.startswith("a=candidate:") and line.strip() != "a=end-of-candidates"
        ]
        missing = [
            attr
            for attr in shared
            if not any(line.startswith(attr.split(":", 1)[0] + ":") for line in kept)
        ]
        section[:] = [
            *kept,
            *missing,
            *(f"a=candidate:{value}" for value in values),
            *(["a=end-of-candidates"] if signal_end else []),
        ]
    text = eol.join([*session, *(line for section in sections for line in section)]) + eol
    return AnswerCandidates(
        text, values, end, ice_lite, tuple(m for s in bundled if (m := _mid(s)) is not None)
    )


@dataclass(frozen=True)
class SdpFragment:
    """A trickle-ICE SDP fragment (RFC 8840): ICE credentials and candidates per m= section."""

    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    candidates: dict[str, list[str]] = field(default_factory=dict)  # mid -> candidate values
    end_of_candidates: bool = False

    def all_candidates(self) -> list[str]:
        seen: dict[tuple[str, str, str, str], str] = {}
        for values in self.candidates.values():
            for value in values:
                seen.setdefault(candidate_key(value), value)
        return list(seen.values())


def parse_sdpfrag(text: str) -> SdpFragment:
    """Read an ``application/trickle-ice-sdpfrag`` body; unknown lines are ignored."""
    ufrag = pwd = None
    mid = ""
    candidates: dict[str, list[str]] = {}
    end = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif line.startswith("a=ice-pwd:"):
            pwd = line.split(":", 1)[1]
        elif line.startswith("a=mid:"):
            mid = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            value = line[len("a=candidate:") :]
            if well_formed(value):
                candidates.setdefault(mid, []).append(value)
        elif line == "a=end-of-candidates":
            end = True
    return SdpFragment(ufrag, pwd, candidates, end)


def build_sdpfrag(
    *, ice_ufrag: str, ice_pwd: str, mid: str, candidates: list[str], end: bool
) -> str:
    """An sdpfrag carrying ``candidates`` of one bundled transport (first m= section, RFC 9725)."""
    lines = [
        f"a=ice-ufrag:{ice_ufrag}",
        f"a=ice-pwd:{ice_pwd}",
        "m=audio 9 RTP/AVP 0",  # RFC 8840: a placeholder m= line; the mid says which
        f"a=mid:{mid}",
        *(f"a=candidate:{value}" for value in candidates),
        *(["a=end-of-candidates"] if end else []),
    ]
    return "\r\n".join(lines) + "\r\n"


def local_sdpfrag(local_sdp: str) -> str | None:
    """Our own gathered candidates as an sdpfrag (first bundled section), or None if none."""
    session, sections = split_sections(local_sdp)
    if not sections:
        return None
    bundle = _bundle_mids(session)
    first = _tagged(sections, bundle)
    lines = [*session, *first]
    ufrag = next((line.split(":", 1)[1] for line in lines if line.startswith("a=ice-ufrag:")), None)
    pwd = next((line.split(":", 1)[1] for line in lines if line.startswith("a=ice-pwd:")), None)
    mid = _mid(first)
    values = [line[len("a=candidate:") :] for line in first if line.startswith("a=candidate:")]
    if ufrag is None or pwd is None or mid is None or not values:
        return None
    return build_sdpfrag(ice_ufrag=ufrag, ice_pwd=pwd, mid=mid, candidates=values, end=True)


# --- SDP helpers ------------------------------------------------------------------------------


def split_sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    """The session-level lines of ``sdp`` and the lines of each m= section (blank lines dropped)."""
    session: list[str] = []
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if not line:
            continue
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def _bundle_mids(session: list[str]) -> list[str]:
    for line in session:
        if line.startswith("a=group:BUNDLE"):
            return line.split()[1:]
    return []


def _mid(section: list[str]) -> str | None:
    for line in section:
        if line.startswith("a=mid:"):
            return line[len("a=mid:") :].strip()
    return None


def _tagged(bundled: list[list[str]], bundle: list[str]) -> list[str]:
    """The bundle-tagged section: the group's first mid (RFC 8843 section 7.2)."""
    for section in bundled:
        if bundle and _mid(section) == bundle[0]:
            return section
    return bundled[0]


def _fields(value: str) -> list[str]:
    return value.split()


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit()  # "²".isdigit() is True, int("²") fails


def _port(text: str) -> int | None:
    return int(text) if _number(text) and int(text) <= 65535 else None


def well_formed(value: str) -> bool:
    """Whether aiortc and aioice can read a candidate value (RFC 8839 ``foundation component
    transport priority address port typ type [name value]...``): numbers where they expect
    numbers, a port in range."""
    fields = _fields(value)
    if len(fields) < 8 or fields[6] != "typ":
        return False
    if not (_number(fields[1]) and _number(fields[3]) and _port(fields[5]) is not None):
        return False
    for name, text in zip(fields[8::2], fields[9::2], strict=False):
        bad_rport = name == "rport" and _port(text) is None
        if bad_rport or (name == "generation" and not _number(text)):
            return False
    return True


def _transport(value: str) -> str:
    fields = _fields(value)
    return fields[2].lower() if len(fields) > 2 else ""
