"""A private network namespace held open by a ``sleep`` process (``unshare -n``).

Every participant (coturn, senders, proxy, the client) runs inside it through
:attr:`Namespace.prefix` (``nsenter --net=/proc/PID/ns/net --``); pytest itself stays
outside. Only ``lo`` exists in it: 127.0.0.1 plus 127.0.0.2, a second loopback address that
aioice gathers as a host candidate (it leaves 127.0.0.1 out), so ``--ice-policy all`` has a
direct path to try — which the firewall (``firewall.py``) then kills.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SECOND_LOOPBACK = "127.0.0.2"
# Ephemeral ports stay below coturn's relay range (49152+): a sender that binds port 0
# can never look like a relay port to the firewall.
EPHEMERAL_PORTS = "32768 49000"


class NamespaceError(RuntimeError):
    """The namespace could not be made or configured."""


@dataclass
class Namespace:
    holder: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.holder.pid

    @property
    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside this namespace."""
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--"]

    def run(self, cmd: Sequence[str], *, stdin: str | None = None) -> str:
        """Run ``cmd`` inside the namespace; its stdout (raises on failure)."""
        result = subprocess.run(
            [*self.prefix, *cmd], input=stdin, capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            raise NamespaceError(f"{' '.join(cmd)}: {result.stderr.strip()}")
        return result.stdout

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[Namespace]:
        holder = subprocess.Popen(
            ["unshare", "-n", "sleep", "3600"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        namespace = cls(holder)
        try:
            namespace._wait_unshared()
            namespace.run(["ip", "link", "set", "lo", "up"])
            namespace.run(["ip", "addr", "add", f"{SECOND_LOOPBACK}/32", "dev", "lo"])
            namespace.run(["sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={EPHEMERAL_PORTS}"])
            yield namespace
        finally:
            namespace.stop()

    def _wait_unshared(self, timeout: float = 10.0) -> None:
        # nsenter before unshare has run would configure *our* namespace: wait for the exec
        # of sleep (after the unshare) and check the namespace really differs from ours.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.holder.poll() is not None:
                raise NamespaceError(f"unshare -n exited with {self.holder.returncode}")
            try:
                comm = Path(f"/proc/{self.pid}/comm").read_text().strip()
                theirs = os.readlink(f"/proc/{self.pid}/ns/net")
            except OSError:
                comm, theirs = "", ""
            if comm == "sleep":
                if theirs == os.readlink("/proc/self/ns/net"):
                    raise NamespaceError("unshare -n did not create a network namespace")
                return
            time.sleep(0.02)
        raise NamespaceError("unshare -n did not start in time")

    def stop(self) -> None:
        """End the holder (by its PID); the namespace goes with its last process."""
        if self.holder.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.holder.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.holder.wait(5)
