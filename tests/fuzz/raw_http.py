"""HTTP requests written byte by byte: a header may hold what no HTTP client library would
send (bytes that are not UTF-8, a NUL, a lone CR)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

__all__ = ["Request", "send"]


@dataclass(frozen=True)
class Request:
    """One raw request: method, path, Authorization (None: absent), Content-Type, body."""

    method: str
    path: str
    authorization: bytes | None
    content_type: bytes = b"application/json"
    body: bytes = b"{}"


async def send(port: int, request: Request) -> int:
    """The status 127.0.0.1:``port`` answers ``request`` with (0: it closed without one)."""
    lines = [
        f"{request.method} {request.path} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Connection: close",
        b"Content-Type: " + request.content_type,
        b"Content-Length: %d" % len(request.body),
    ]
    if request.authorization is not None:
        lines.append(b"Authorization: " + request.authorization)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status_line = b""
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + request.body)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()  # the rest: the server has finished with the request
    except ConnectionResetError:
        pass  # it answered (or not) and closed while we still wrote: the status line tells
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()
    fields = status_line.split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
