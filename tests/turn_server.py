"""A real coturn for tests, on 127.0.0.1, started and stopped by PID.

    with TurnServer.start(tmp_path) as turn:      # skips locally / fails in CI without coturn
        turn.turn_config                          # TurnConfig (url, username, credential)
        turn.ports                                # TurnPorts(udp=(p, alt), tcp=p, tls=tls)
        turn.ca_file                              # the CA to trust for turns:

coturn listens on ``port`` (UDP+TCP), ``port + 1`` (an "aux server", UDP+TCP; coturn's
"alt" port only serves RFC 5780 with two IPs) and ``tls_port`` (TLS). Fixed ports can be
given (e.g. inside a private network namespace); otherwise free ones are picked.
pytest fixture: :func:`turn_server`.

Like the avatar service's (see tests/interop/production)::

    TurnServer.start(workdir, port=80, tls_port=443, dtls=True, auth_secret=SECRET,
                     relay_ports=(49152, 49252), wrap=["nsenter", "--net=...", "--"])
    turn.rest_turn_config("name")                 # fresh TURN REST credentials

``dtls=True`` drops the aux server: coturn tells plain TURN from TLS/DTLS on both ports, so
the four URLs are ``port``/udp, ``tls_port``/udp, ``port``/tcp and ``tls_port``/tls.
``auth_secret`` switches from one static user to TURN REST credentials
(``--use-auth-secret``). ``wrap`` prefixes the command (e.g. ``nsenter`` into a namespace);
readiness is then checked with ``ss`` through the same prefix.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from avatar_rtc.api.models import TurnConfig
from avatar_rtc.emulator.turn_rest import rest_credentials
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


def make_ca_and_server_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for ``host`` (IP SAN), made with
    openssl: ``(ca, cert, key)``. Clients trust ``ca`` (``SSL_CERT_FILE`` or a cafile)."""
    ca, ca_key = directory / "turn-ca.pem", directory / "turn-ca-key.pem"
    cert, key, csr = directory / "turn-cert.pem", directory / "turn-key.pem", directory / "turn.csr"
    ext = directory / "turn-cert.ext"
    ext.write_text(
        f"subjectAltName=IP:{host}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(ca_key),
         "-out", str(ca), "-subj", "/CN=avatar-rtc test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
         "-subj", f"/CN={host}"],
        ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "1", "-out", str(cert), "-extfile", str(ext)],
    ):  # fmt: skip
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)
    return ca, cert, key


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
    dtls: bool = False
    auth_secret: str | None = None
    wrap: Sequence[str] = field(default_factory=tuple)

    @property
    def ports(self) -> TurnPorts:
        second_udp = self.tls_port if self.dtls else self.port + 1
        return TurnPorts(udp=(self.port, second_udp), tcp=self.port, tls=self.tls_port)

    @property
    def turn_config(self) -> TurnConfig:
        if self.auth_secret is not None:
            return self.rest_turn_config("tester")
        return TurnConfig(url=self.host, username=Secret(USERNAME), credential=Secret(PASSWORD))

    def rest_turn_config(self, name: str, lifetime: float = 3600.0) -> TurnConfig:
        """Fresh TURN REST credentials (``auth_secret`` mode), as init-client hands them out."""
        if self.auth_secret is None:
            raise RuntimeError("this coturn uses a static user, not TURN REST credentials")
        username, credential = rest_credentials(self.auth_secret, name, lifetime)
        return TurnConfig(url=self.host, username=Secret(username), credential=Secret(credential))

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
        dtls: bool = False,
        auth_secret: str | None = None,
        relay_ports: tuple[int, int] | None = None,
        wrap: Sequence[str] = (),
    ) -> Iterator[TurnServer]:
        if binary is None:
            from tests.support import require_tool

            binary = require_tool("turnserver")
            require_tool("openssl")
        if wrap and not (port and tls_port):
            raise ValueError("with a command prefix (another namespace) give fixed ports")
        workdir.mkdir(parents=True, exist_ok=True)
        ca, cert, key = make_ca_and_server_cert(workdir, host)
        port = port or _free_port_pair(host)
        tls_port = tls_port or _free_tcp_port(host)
        if relay_ports is None:
            relay_base = random.randrange(40000, 60000, 200)
            relay_ports = (relay_base, relay_base + 199)
        log_file = workdir / "turnserver.log"
        # The credentials go in a config file only we can read: a command line is anyone's (ps).
        if auth_secret is not None:
            lines = ["use-auth-secret", f"static-auth-secret={auth_secret}",
                     f"userdb={workdir / 'turndb'}"]  # fmt: skip
        else:
            lines = ["lt-cred-mech", f"user={USERNAME}:{PASSWORD}"]
        config = workdir / "turnserver.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text("\n".join(lines) + "\n")
        # With DTLS on, coturn serves plain TURN and TLS/DTLS on both ports (the service's
        # 80 + 443); otherwise a second plain UDP port comes from an aux server.
        listeners = [] if dtls else ["--aux-server", f"{host}:{port + 1}", "--no-dtls"]
        args = [
            *wrap, binary, "-c", str(config), "--listening-ip", host, "--relay-ip", host,
            "--listening-port", str(port), *listeners,
            "--tls-listening-port", str(tls_port), "--alt-tls-listening-port", str(tls_port),
            "--cert", str(cert), "--pkey", str(key),
            "--min-port", str(relay_ports[0]), "--max-port", str(relay_ports[1]),
            "--realm", "test",
            "--fingerprint", "--no-cli", "--allow-loopback-peers", "--no-multicast-peers",
            "--pidfile", str(workdir / "turnserver.pid"), "--log-file", str(log_file),
            "--simple-log", "--no-stdout-log",
        ]  # fmt: skip
        process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        server = cls(host, port, tls_port, ca, process, log_file, dtls, auth_secret, tuple(wrap))
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
            if self._listening():
                time.sleep(0.1)  # UDP listeners come up with the TCP ones
                return
            time.sleep(0.05)
        raise RuntimeError(f"turnserver not ready after {timeout} s:\n{self.log()[-2000:]}")

    def _listening(self) -> bool:
        """Whether both TCP listeners accept (seen from inside ``wrap``'s namespace if any)."""
        ports = (self.port, self.tls_port)
        if self.wrap:
            result = subprocess.run(
                [*self.wrap, "ss", "-Hltn"], capture_output=True, text=True, timeout=10
            )
            listening = result.stdout.split()
            return all(f"{self.host}:{p}" in listening for p in ports)
        for p in ports:
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex((self.host, p)) != 0:
                    return False
        return True

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
