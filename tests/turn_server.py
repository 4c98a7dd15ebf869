"""A real coturn for tests, on 127.0.0.1, started and stopped by PID.

    with TurnServer.start(tmp_path) as turn:      # skips locally / fails in CI without coturn
        turn.turn_config                          # TurnConfig (url, username, credential)
        turn.ports                                # TurnPorts(udp=(p, alt), tcp=p, tls=tls)
        turn.ca_file                              # self-signed cert to trust for turns:

coturn listens on ``port`` (UDP+TCP), ``port + 1`` (an "aux server", UDP+TCP; coturn's
"alt" port only serves RFC 5780 with two IPs) and ``tls_port`` (TLS). Fixed ports can be
given (e.g. inside a private network namespace); otherwise free ones are picked.
pytest fixture: :func:`turn_server`.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from avatar_rtc.api.models import TurnConfig
from avatar_rtc.redact import Secret
from avatar_rtc.rtc.ice_servers import TurnPorts

USERNAME = "tester"
PASSWORD = "s3cret-turn-pass"


def make_self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway certificate for ``host`` (IP SAN) and its key, made with openssl."""
    cert, key = directory / "turn-cert.pem", directory / "turn-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={host}",
         "-addext", f"subjectAltName=IP:{host}"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def _free_port_pair(host: str) -> int:
    """A port p such that p and p+1 are free for both UDP and TCP (best effort)."""
    for _ in range(50):
        port = random.randrange(20000, 32000)
        try:
            with contextlib.ExitStack() as stack:
                for p in (port, port + 1):
                    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                        s = stack.enter_context(socket.socket(socket.AF_INET, kind))
                        s.bind((host, p))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def _free_tcp_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class TurnServer:
    host: str
    port: int
    tls_port: int
    ca_file: Path
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def ports(self) -> TurnPorts:
        return TurnPorts(udp=(self.port, self.port + 1), tcp=self.port, tls=self.tls_port)

    @property
    def turn_config(self) -> TurnConfig:
        return TurnConfig(url=self.host, username=Secret(USERNAME), credential=Secret(PASSWORD))

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls_port: int | None = None,
        binary: str | None = None,
    ) -> Iterator[TurnServer]:
        if binary is None:
            from tests.support import require_tool

            binary = require_tool("turnserver")
            require_tool("openssl")
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key = make_self_signed_cert(workdir, host)
        port = port or _free_port_pair(host)
        tls_port = tls_port or _free_tcp_port(host)
        relay_base = random.randrange(40000, 60000, 200)
        log_file = workdir / "turnserver.log"
        args = [
            binary, "-n", "--listening-ip", host, "--relay-ip", host,
            "--listening-port", str(port), "--aux-server", f"{host}:{port + 1}",
            "--tls-listening-port", str(tls_port), "--alt-tls-listening-port", str(tls_port),
            "--cert", str(cert), "--pkey", str(key), "--no-dtls",
            "--min-port", str(relay_base), "--max-port", str(relay_base + 199),
            "--lt-cred-mech", "--user", f"{USERNAME}:{PASSWORD}", "--realm", "test",
            "--fingerprint", "--no-cli", "--allow-loopback-peers", "--no-multicast-peers",
            "--pidfile", str(workdir / "turnserver.pid"), "--log-file", str(log_file),
            "--simple-log", "--no-stdout-log",
        ]  # fmt: skip
        process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        server = cls(host, port, tls_port, cert, process, log_file)
        try:
            server._wait_ready()
            yield server
        finally:
            server.stop()

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"turnserver exited early:\n{self.log()[-2000:]}")
            ready = True
            for p in (self.port, self.tls_port):
                with socket.socket() as s:
                    s.settimeout(0.2)
                    if s.connect_ex((self.host, p)) != 0:
                        ready = False
            if ready:
                time.sleep(0.1)  # UDP listeners come up with the TCP ones
                return
            time.sleep(0.05)
        raise RuntimeError(f"turnserver not ready after {timeout} s:\n{self.log()[-2000:]}")

    def stop(self) -> None:
        """Stop our coturn by its PID (never by name)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    """One coturn per test module (UDP, TCP and TLS listeners)."""
    with TurnServer.start(tmp_path_factory.mktemp("coturn")) as server:
        yield server
