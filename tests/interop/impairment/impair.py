"""Impairments on UDP ports of the current (private) network namespace: loss, outages, caps.

Run inside a namespace of our own (``unshare -n``, root): the rules apply to ``lo``.

- :func:`random_loss`: nft ``numgen random`` drops on the **input** hook, both directions of
  each port (on the output hook the sending socket would get EPERM instead of silent loss);
  every packet is an independent draw.
- :func:`outage`: every UDP packet to or from the ports is dropped while inside the block
  (an ``async with`` block: nft runs in a thread, see there).
- :func:`rate_cap`: a ``tbf`` under an ``htb`` class per port, for packets *from* the port (the
  media direction when the port is the delay relay's), so each receiver has a cap of its own;
  other traffic goes through an unlimited default class. (netem is not in these kernels;
  ``prio`` neither, ``htb`` is.)
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

LOSS_TABLE = "avatar_rtc_loss"
OUTAGE_TABLE = "avatar_rtc_cut"
TBF_LATENCY_MS = 100  # the cap's queue: packets that would wait longer are dropped
TBF_BURST_BYTES = 8000


def _run(*cmd: str, stdin: str | None = None) -> None:
    subprocess.run(cmd, input=stdin, text=True, check=True, capture_output=True, timeout=10)


def _ports(ports: Sequence[int]) -> str:
    return "{ " + ", ".join(str(p) for p in ports) + " }"


def _drop_table(table: str, ports: Sequence[int], verdict: str) -> str:
    return f"""
table inet {table} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    udp sport {_ports(ports)} {verdict}
    udp dport {_ports(ports)} {verdict}
  }}
}}
"""


def _add_table(table: str, ports: Sequence[int], verdict: str) -> None:
    _run("nft", "-f", "-", stdin=_drop_table(table, ports, verdict))


def _delete_table(table: str) -> None:
    _run("nft", "delete", "table", "inet", table)


@contextlib.contextmanager
def _table(table: str, ports: Sequence[int], verdict: str) -> Iterator[None]:
    _add_table(table, ports, verdict)
    try:
        yield
    finally:
        _delete_table(table)


@contextlib.contextmanager
def random_loss(ports: Sequence[int], percent: int) -> Iterator[None]:
    """Drop ``percent`` % of the UDP packets to and from ``ports`` (0: nothing to do)."""
    if percent <= 0:
        yield
        return
    with _table(LOSS_TABLE, ports, f"numgen random mod 100 < {percent} drop"):
        yield


@contextlib.asynccontextmanager
async def outage(ports: Sequence[int]) -> AsyncIterator[None]:
    """No UDP to or from ``ports`` while inside the block.

    nft runs in a thread: a table's deletion blocks for up to ~15 ms (it waits for the kernel),
    and on a receiver's event loop that would hold back the first packets after the outage
    while a receiver in another process already had them."""
    await asyncio.to_thread(_add_table, OUTAGE_TABLE, ports, "drop")
    try:
        yield
    finally:
        await asyncio.to_thread(_delete_table, OUTAGE_TABLE)


@contextlib.contextmanager
def rate_cap(ports: Sequence[int], kbit: int | None) -> Iterator[None]:
    """Cap the UDP packets sent from each of ``ports`` to ``kbit`` kbit/s (None: no cap)."""
    if not kbit:
        yield
        return
    _run("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "99")
    try:
        _run("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:99",
             "htb", "rate", "10gbit")  # fmt: skip
        for n, port in enumerate(ports, start=10):
            _run("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", f"1:{n}",
                 "htb", "rate", "10gbit")  # fmt: skip
            _run("tc", "qdisc", "add", "dev", "lo", "parent", f"1:{n}", "handle", f"{n}:",
                 "tbf", "rate", f"{kbit}kbit", "burst", str(TBF_BURST_BYTES),
                 "latency", f"{TBF_LATENCY_MS}ms")  # fmt: skip
            _run("tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip",
                 "prio", "1", "u32", "match", "ip", "sport", str(port), "0xffff",
                 "flowid", f"1:{n}")  # fmt: skip
        yield
    finally:
        _run("tc", "qdisc", "del", "dev", "lo", "root")


def tbf_drops() -> int:
    """Packets the caps dropped so far (``tc -s``), summed over our tbf qdiscs."""
    out = subprocess.run(["tc", "-s", "qdisc", "show", "dev", "lo"], capture_output=True,
                         text=True, check=True, timeout=10).stdout  # fmt: skip
    drops, in_tbf = 0, False
    for line in out.splitlines():
        if line.startswith("qdisc "):
            in_tbf = line.split()[1] == "tbf"
        elif in_tbf and "dropped" in line:
            drops += int(line.split("dropped")[1].split(",")[0])
    return drops


def udp_receive_buffer_errors() -> int:
    """Datagrams this namespace's UDP sockets dropped for a full receive buffer
    (``RcvbufErrors`` of ``/proc/net/snmp``): a process on the path that stalled on a loaded
    machine, not the cell's impairment."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = (row for row in lines if row[0] == "Udp:")
    return int(values[names.index("RcvbufErrors")])
