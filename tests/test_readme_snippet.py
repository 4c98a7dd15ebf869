"""The README's Python snippet runs as printed, and shows the form that closes its stream."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(path: Path, text: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
    """``text`` run as a script in ``path``'s folder, without the caller's AVATAR_* settings;
    it must succeed."""
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_")}
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=path.parent,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"## Using it from Python\n\n```python\n(.*?)```", readme, re.S)
    assert found, "the README has no Python snippet under 'Using it from Python'"
    return found.group(1)


def test_the_readme_snippet_runs_and_closes_its_video_stream(tmp_path: Path) -> None:
    result = run_script(tmp_path / "snippet.py", snippet(), timeout=90)
    assert "(224, 224, 3)" in result.stdout
    assert (tmp_path / "out.mkv").stat().st_size > 0
    # The snippet prints stats() after leaving its frame loop: a stream left open (``break`` out
    # of ``async for`` alone) keeps the video decoder running until the session ends.
    decoder = re.search(r"video_decoder=DecoderStats\([^)]*\)", result.stdout)
    assert decoder and "running=False" in decoder.group(0), result.stdout[-3000:]


def qa_snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"From Python \(`avatar_rtc\.qa`.*?```python\n(.*?)```", readme, re.S)
    assert found, "the README has no LiveQa snippet"
    return found.group(1)


def test_the_readme_qa_snippet_gives_a_report_of_the_turn(tmp_path: Path) -> None:
    """As printed (with a session of the emulator for ``options``): the turn is spoken before
    the report is taken (leaving out the waits gave an empty report, verdict fail)."""
    body = "\n".join("        " + line for line in qa_snippet().splitlines())
    result = run_script(
        tmp_path / "qa_snippet.py",
        "import asyncio\n"
        "from avatar_rtc import AvatarSession, IceOptions, SessionOptions\n"
        "from avatar_rtc.emulator import Emulator\n"
        "from avatar_rtc.qa import LiveQa\n\n"
        "async def main() -> None:\n"
        "    async with Emulator() as emu:\n"
        "        options = SessionOptions(api_url=emu.api_url, ks=emu.ks,\n"
        "                                 ice=IceOptions(host_addresses=('127.0.0.1',)))\n"
        f"{body}\n\n"
        "asyncio.run(main())\n",
        timeout=120,
    )
    assert result.stdout.strip().splitlines()[-1] == "pass", result.stdout
