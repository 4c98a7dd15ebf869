"""Ways a standards-compliant WHEP server may shape its SDP answer's ICE candidates.

Each shape takes an answer that lists candidates (any section) and returns it reshaped; they
are used by the connection-layer tests and by the production-topology matrix.
"""

from __future__ import annotations

from collections.abc import Callable

from avatar_rtc.rtc.sdp_candidates import split_sections as _sections

Shape = Callable[[str], str]


def _join(session: list[str], sections: list[list[str]]) -> str:
    return "\r\n".join([*session, *(line for s in sections for line in s)]) + "\r\n"


def candidate_lines(sdp: str) -> list[str]:
    """Every distinct ``a=candidate:`` line of ``sdp``, in order."""
    return list(dict.fromkeys(line for line in sdp.splitlines() if line.startswith("a=candidate:")))


def _is_ice_line(line: str) -> bool:
    return line.startswith("a=candidate:") or line == "a=end-of-candidates"


def in_section(index: int) -> Shape:
    """All candidates (and end-of-candidates) in the m= section ``index`` only."""

    def shape(sdp: str) -> str:
        session, sections = _sections(sdp)
        found = candidate_lines(sdp)
        end = "a=end-of-candidates" in sdp.splitlines()
        for section in sections:
            section[:] = [line for line in section if not _is_ice_line(line)]
        sections[index] += [*found, *(["a=end-of-candidates"] if end else [])]
        return _join(session, sections)

    return shape


first_only = in_section(0)
last_only = in_section(-1)


def every(sdp: str) -> str:
    """The same candidates in every m= section."""
    session, sections = _sections(sdp)
    found = candidate_lines(sdp)
    end = "a=end-of-candidates" in sdp.splitlines()
    for section in sections:
        section[:] = [line for line in section if not _is_ice_line(line)]
        section += [*found, *(["a=end-of-candidates"] if end else [])]
    return _join(session, sections)


def ice_lite(sdp: str) -> str:
    """``a=ice-lite`` at session level (the server claims to be a lite agent)."""
    session, sections = _sections(sdp)
    if "a=ice-lite" not in session:
        session.append("a=ice-lite")
    return _join(session, sections)


def tcp_only(sdp: str) -> str:
    """Every UDP candidate rewritten as a passive TCP one (same address and port)."""
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if fields[2].lower() == "udp":
                fields[2] = "tcp"
                fields.append("tcptype")
                fields.append("passive")
            line = " ".join(fields)
        out.append(line)
    return "\r\n".join(line for line in out if line) + "\r\n"


def without_candidates(sdp: str) -> str:
    """No candidates at all (a server that trickles them later)."""
    session, sections = _sections(sdp)
    for section in sections:
        section[:] = [line for line in section if not _is_ice_line(line)]
    return _join(session, sections)


SHAPES: dict[str, Shape] = {
    "first-only": first_only,
    "last-only": last_only,
    "every": every,
    "ice-lite": ice_lite,
    "tcp-only": tcp_only,
}
