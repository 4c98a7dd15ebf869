"""The production topology: every participant inside one namespace, the sender behind TURN.

:meth:`Topology.start` makes the namespace (``netns``), starts coturn like the service's
(80 UDP+TCP, 443 TLS+DTLS, TURN REST credentials, a CA the client trusts through
``SSL_CERT_FILE``) and installs the firewall (``firewall``). Senders start on first use and
live until the topology stops: emulators (one per configuration, ``avatar-rtc emulator``
handing out coturn and REST credentials from init-client, optionally an external WHEP URL),
GStreamer webrtcbin, headless Chromium, and the answer-shaping proxy (``whep_proxy``).
:meth:`Topology.client` runs ``avatar-rtc probe``/``record`` through the Control API.

Every process is started by us in its own process group and stopped by that id only;
each gets SIGKILL if the test run dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests.interop.harness import ROOT, SYSTEM_PYTHON, _stop, read_until
from tests.interop.peers.chromium_sender.relay import die_with_parent
from tests.interop.production.firewall import Firewall
from tests.interop.production.netns import Namespace
from tests.interop.production.sdp_shapes import Shape
from tests.turn_server import TurnServer

HOST = "127.0.0.1"
TURN_PORT, TURN_TLS_PORT = 80, 443
RELAY_PORTS = (49152, 49252)
FIRST_EMULATOR_PORT = 8001  # fixed ports are free in a private namespace
READY_TIMEOUT_S = 60.0

SenderName = Literal["emulator", "gstreamer", "chromium"]
Command = Literal["probe", "record"]
# "media connected in 85 ms via relay (turn/udp turn:127.0.0.1:80?transport=udp) ..."
CONNECTED_RE = re.compile(r"media connected in \d+ ms via (\w+)(?: \(turn/(\w+) (\S+)\))?")


class TopologyError(RuntimeError):
    """A participant did not start."""


@dataclass
class Participant:
    """A process inside the namespace and the lines it printed until it was ready."""

    name: str
    proc: subprocess.Popen[str]
    log_path: Path
    lines: list[str]
    extra_pgid: int | None = None

    def value(self, prefix: str) -> str:
        """The rest of the first ready line starting with ``prefix``."""
        return next(line[len(prefix) :] for line in self.lines if line.startswith(prefix))

    def log(self, tail: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-tail:])

    def stop(self) -> None:
        _stop(self.proc, self.extra_pgid)


@dataclass(frozen=True)
class EmulatorConfig:
    codec: str = "H264"
    # Hand out this WHEP URL: {session_id} is replaced by the emulator, {port} (the
    # emulator's own port, for a proxy in front of it) by us.
    whep_url: str | None = None
    turn: bool = True  # hand out coturn with REST credentials (else the emulator's placeholder)
    media: bool = True


@dataclass
class Emulator:
    participant: Participant
    api_url: str
    ks: str


@dataclass
class ClientRun:
    """One ``avatar-rtc probe``/``record`` run: exit status, JSON output, selected pair."""

    command: Command
    returncode: int
    report: dict[str, Any] | None
    stderr: str
    seconds: float
    pair: dict[str, str | None] | None  # local_type, relay_transport, relay_url
    log_path: Path  # the whole stderr (-v), aioice's checks included

    def context(self) -> str:
        lines = [line for line in self.stderr.splitlines() if "aioice.ice" not in line]
        return (
            f"exit {self.returncode} report={self.report}\nfull log: {self.log_path}\n"
            + "\n".join(lines[-40:])
        )


@dataclass
class Topology:
    namespace: Namespace
    turn: TurnServer
    firewall: Firewall
    workdir: Path
    secret: str
    _participants: dict[str, Participant] = field(default_factory=dict)
    _emulators: dict[EmulatorConfig, Emulator] = field(default_factory=dict)
    _runs: int = 0

    @classmethod
    @contextlib.contextmanager
    def start(cls, workdir: Path) -> Iterator[Topology]:
        with contextlib.ExitStack() as stack:
            namespace = stack.enter_context(Namespace.start())
            secret = secrets.token_urlsafe(24)
            turn = stack.enter_context(
                TurnServer.start(
                    workdir / "coturn",
                    port=TURN_PORT,
                    tls_port=TURN_TLS_PORT,
                    dtls=True,
                    auth_secret=secret,
                    relay_ports=RELAY_PORTS,
                    wrap=namespace.prefix,
                )
            )
            firewall = Firewall.install(namespace, (TURN_PORT, TURN_TLS_PORT), RELAY_PORTS)
            topology = cls(namespace, turn, firewall, workdir, secret)
            stack.callback(topology._stop_participants)
            yield topology

    def _stop_participants(self) -> None:
        for emulator in self._emulators.values():
            emulator.participant.stop()
        for participant in self._participants.values():
            participant.stop()

    # --- participants -------------------------------------------------------------------

    def _spawn(
        self,
        name: str,
        cmd: Sequence[str],
        ready: str,
        env: dict[str, str] | None = None,
    ) -> Participant:
        """Start ``cmd`` in the namespace; wait for a stdout line starting with ``ready``."""
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen(
                [*self.namespace.prefix, *cmd],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                env=env,
                start_new_session=True,  # its own process group: stopped by that id only
                preexec_fn=die_with_parent,
            )
        participant = Participant(name, proc, log_path, [])
        try:
            participant.lines = _read_until(proc, ready, READY_TIMEOUT_S)
        except TopologyError as exc:
            participant.stop()
            raise TopologyError(f"{name}: {exc}\n{participant.log()}") from None
        return participant

    def emulator(self, config: EmulatorConfig = EmulatorConfig()) -> Emulator:
        """The emulator of this configuration (started on first use)."""
        if config in self._emulators:
            return self._emulators[config]
        port = FIRST_EMULATOR_PORT + len(self._emulators)
        cmd = [sys.executable, "-m", "avatar_rtc.cli", "-v", "emulator", "--port", str(port)]
        env = dict(os.environ)
        if config.turn:
            cmd += ["--turn-url", HOST]
            env["AVATAR_EMULATOR_TURN_SECRET"] = self.secret
        cmd += ["--video-codec", config.codec] if config.media else ["--no-media"]
        if config.whep_url is not None:
            cmd += ["--whep-url-override", config.whep_url.replace("{port}", str(port))]
        participant = self._spawn(f"emulator-{port}", cmd, "AVATAR_KS=", env)
        emulator = Emulator(
            participant, participant.value("AVATAR_API_URL="), participant.value("AVATAR_KS=")
        )
        self._emulators[config] = emulator
        return emulator

    def _sender(self, name: str, cmd: Sequence[str]) -> Participant:
        if name not in self._participants:
            participant = self._spawn(name, cmd, "READY ")
            fields = participant.value("READY ").split()
            if len(fields) > 1 and int(fields[1]) > 0:
                participant.extra_pgid = int(fields[1])  # Chromium's own process group
            self._participants[name] = participant
        return self._participants[name]

    def sender_url(self, name: Literal["gstreamer", "chromium"]) -> str:
        """``http://127.0.0.1:PORT/whep`` of that sender (started on first use)."""
        if name == "gstreamer":
            cmd = [SYSTEM_PYTHON, "tests/interop/peers/gst_whep_sender.py", "--port", "0"]
        else:
            cmd = [sys.executable, "-m", "tests.interop.peers.chromium_sender.relay", "--port",
                   "0", "--chromium", _which("chromium")]  # fmt: skip
        return self._sender(name, cmd).value("READY ").split()[0]

    def proxy(self) -> Participant:
        return self._sender("proxy", [sys.executable, "-m", "tests.interop.production.whep_proxy"])

    def proxy_url(self) -> str:
        return self.proxy().value("READY ").split()[0]

    def whep_emulator(self, sender: SenderName, codec: str, shape: Shape | None) -> Emulator:
        """The emulator that hands out the WHEP URL of ``sender`` (through the proxy when a
        ``shape`` is given): the client always takes the production path, create +
        init-client (whepUrl + TURN REST credentials), then WHEP."""
        if sender == "emulator":
            if shape is None:
                return self.emulator(EmulatorConfig(codec=codec))
            template = f"{self.proxy_url()}/{shape}/{{port}}/v1/whep/{{session_id}}"
            return self.emulator(EmulatorConfig(codec=codec, whep_url=template))
        url = self.sender_url(sender)
        if shape is not None:
            port_path = url.split("://", 1)[1].split(":", 1)[1]  # "PORT/whep"
            url = f"{self.proxy_url()}/{shape}/{port_path}"
        return self.emulator(EmulatorConfig(whep_url=f"{url}?codec={codec}", media=False))

    # --- the client -------------------------------------------------------------------

    def client(
        self,
        emulator: Emulator,
        command: Command,
        *,
        codec: str,
        policy: Literal["all", "relay"] = "all",
        suffix: str = ".mp4",
        seconds: float = 1.5,
        connect_timeout: float = 10.0,
    ) -> tuple[ClientRun, Path | None]:
        """Run the CLI in the namespace against ``emulator``'s Control API."""
        self._runs += 1
        out = self.workdir / f"record-{self._runs}{suffix}" if command == "record" else None
        cmd = [sys.executable, "-m", "avatar_rtc.cli", "-v", command]
        if out is not None:
            cmd += [str(out), "--json", "--no-progress"]
        else:
            cmd += ["--compact"]
        cmd += ["--duration", str(seconds), "--codec", codec, "--ice-policy", policy,
                "--connect-timeout", str(connect_timeout)]  # fmt: skip
        # Secrets through the environment (arguments show in ps); the CA for turns:.
        env = {**os.environ, "AVATAR_API_URL": emulator.api_url, "AVATAR_KS": emulator.ks,
               "SSL_CERT_FILE": str(self.turn.ca_file)}  # fmt: skip
        limit = connect_timeout + seconds + 60
        started = time.monotonic()
        result = subprocess.run(
            [*self.namespace.prefix, *cmd],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=limit,
        )
        elapsed = time.monotonic() - started
        log_path = self.workdir / f"client-{self._runs}-{command}.log"
        log_path.write_text(result.stderr)
        report = _last_json(result.stdout)
        run = ClientRun(command, result.returncode, report, result.stderr, elapsed,
                        _selected_pair(command, report, result.stderr), log_path)  # fmt: skip
        return run, out


def _which(name: str) -> str:
    from tests.support import require_tool

    return require_tool(name)


def _read_until(proc: subprocess.Popen[str], prefix: str, timeout: float) -> list[str]:
    """Stdout lines up to the first one starting with ``prefix``."""
    lines = read_until(proc, prefix, timeout)
    if lines is None:
        raise TopologyError(f"no {prefix!r} line after {timeout:.0f} s (exit code {proc.poll()})")
    return lines


def _last_json(stdout: str) -> dict[str, Any] | None:
    """The JSON document the command printed (probe: one line; record --json: indented)."""
    start = stdout.find("{")
    if start < 0:
        return None
    try:
        data = json.loads(stdout[start:])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _selected_pair(
    command: Command, report: dict[str, Any] | None, stderr: str
) -> dict[str, str | None] | None:
    """The selected pair: the probe report's, else the connection's log line (``-v``)."""
    if command == "probe" and report is not None and report.get("selected_pair"):
        pair = report["selected_pair"]
        return {k: pair.get(k) for k in ("local_type", "relay_transport", "relay_url")}
    match = CONNECTED_RE.search(stderr)
    if match is None:
        return None
    return {"local_type": match[1], "relay_transport": match[2], "relay_url": match[3]}
