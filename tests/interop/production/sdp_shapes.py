"""The answer shapes the proxy applies, by name (transforms from ``tests/rtc/answer_shapes``).

- ``plain``: unchanged.
- ``first`` / ``last`` / ``every``: the candidates (all m= sections pooled) only in the first
  m= section, only in the last one, or in every one (all are bundled: max-bundle).
- ``ice-lite``: ``a=ice-lite`` added at session level.
- ``tcp-only``: every UDP candidate rewritten as ``tcp ... tcptype passive`` (the sender
  listens on no TCP port: a client must rely on peer-reflexive checks through its relay).
- ``trickle``: no candidate in the answer; :func:`sdpfrag` gives them as an RFC 8840
  fragment (what the WHEP resource returns to the client's PATCH, RFC 9725). Written here,
  not with the client's own ``build_sdpfrag``, so a bug there cannot hide on both sides.
"""

from __future__ import annotations

from typing import Literal

from tests.rtc import answer_shapes

__all__ = ["SHAPES", "Shape", "sdpfrag", "shape_answer"]

Shape = Literal["plain", "first", "last", "every", "ice-lite", "tcp-only", "trickle"]
SHAPES: tuple[Shape, ...] = ("plain", "first", "last", "every", "ice-lite", "tcp-only", "trickle")
TRANSFORMS: dict[Shape, answer_shapes.Shape] = {
    "plain": lambda sdp: sdp,
    "first": answer_shapes.first_only,
    "last": answer_shapes.last_only,
    "every": answer_shapes.every,
    "ice-lite": answer_shapes.ice_lite,
    "tcp-only": answer_shapes.tcp_only,
    "trickle": answer_shapes.without_candidates,
}


def shape_answer(shape: Shape, sdp: str) -> str:
    """The answer ``sdp`` in ``shape`` (see the module docstring)."""
    return TRANSFORMS[shape](sdp)


def sdpfrag(sdp: str) -> str:
    """The answer's candidates as an ``application/trickle-ice-sdpfrag`` body: ICE
    credentials, then the first m= section (the bundle's transport) with all candidates."""
    lines = sdp.splitlines()
    first_m = next(i for i, line in enumerate(lines) if line.startswith("m="))
    out = [next(line for line in lines if line.startswith(f"a={name}:"))
           for name in ("ice-ufrag", "ice-pwd")]  # fmt: skip
    out.append(lines[first_m])
    out += [line for line in lines[first_m:] if line.startswith("a=mid:")][:1]
    out += [*answer_shapes.candidate_lines(sdp), "a=end-of-candidates"]
    return "\r\n".join(out) + "\r\n"
