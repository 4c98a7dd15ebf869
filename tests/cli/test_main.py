"""What every ``avatar-rtc`` command shares: fast start, ``-v`` anywhere, help texts with
defaults and exit statuses, one exit status per error type, a closed stdout is no traceback."""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from avatar_rtc.cli.arguments import verbosity
from avatar_rtc.cli.common import run_command
from avatar_rtc.cli.exit_status import EXIT_BROKEN_PIPE, EXIT_STATUSES, error_line
from avatar_rtc.cli.main import (
    NOT_SECRET_PREFIXES,
    SECRET_OPTIONS,
    build_parser,
    main,
    secret_arguments,
)
from avatar_rtc.errors import (
    AuthenticationError,
    AvatarRTCError,
    ConfigurationError,
    ConnectTimeoutError,
    NetworkError,
    NoMediaError,
    RequestTimeoutError,
    ServerError,
    ThresholdError,
    WhepError,
)
from tests.cli.test_record_cmd import cli_env

ROOT = Path(__file__).resolve().parents[2]
# What takes the ~second of start-up: nothing of it may load for --help / --version.
HEAVY = ("aiohttp", "aiortc", "aioice", "av", "numpy", "cv2", "scipy", "avatar_rtc.session")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


# --- start-up ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["record", "--help"], ["probe", "--help"], ["qa", "-h"]]
)
def test_help_and_version_import_nothing_heavy(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from avatar_rtc.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=cli_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "count"),
    [
        (["probe", "-v"], 1),
        (["-v", "probe"], 1),
        (["-v", "record", "o.mp4", "-vv"], 3),
        (["emulator", "--verbose"], 1),
        (["qa", "f.mkv"], 0),
    ],
)
def test_verbose_before_or_after_the_command(argv: list[str], count: int) -> None:
    assert verbosity(build_parser().parse_args(argv)) == count


def _documented(action: argparse.Action) -> bool:
    """Has help; and a default worth knowing (not None/False/empty/a count) is in it."""
    if not action.help:
        return False
    default = action.default
    trivial = default in (None, False, [], argparse.SUPPRESS) or isinstance(
        action, argparse._CountAction
    )
    return trivial or "default" in action.help


def test_every_option_has_help_and_shows_its_default() -> None:
    parser = build_parser()
    undocumented = []
    for name, sub in {"": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not _documented(action):
                undocumented.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert undocumented == []


def test_secret_options_and_their_abbreviations_but_not_the_options_they_begin_with() -> None:
    """``--turn URL`` is the option --turn, not an abbreviation of --turn-username: its URL
    was masked in every message (``***: timed out``, which server?)."""
    argv = ["probe", "--turn", "turn:127.0.0.1:9", "--turn-cred", "c-1", "--ks=k-1", "--bear", "b"]
    assert secret_arguments(argv) == ["c-1", "k-1", "b"]
    # Every option that begins a secret one's name is a secret itself or listed as not one.
    parser = build_parser()
    names = {
        option
        for sub in (parser, *_subparsers(parser).values())
        for action in sub._actions
        for option in action.option_strings
    }
    prefixes = {n for n in names if any(s != n and s.startswith(n) for s in SECRET_OPTIONS)}
    assert prefixes - set(SECRET_OPTIONS) == set(NOT_SECRET_PREFIXES)


def test_help_lists_every_exit_status() -> None:
    # The codes are the error classes' own (one source), documented once in the table.
    codes = {code for code, _ in EXIT_STATUSES}
    assert {
        ConfigurationError.exit_code,
        NoMediaError.exit_code,
        ThresholdError.exit_code,
        AuthenticationError.exit_code,
        NetworkError.exit_code,
        ConnectTimeoutError.exit_code,
        WhepError.exit_code,
        AvatarRTCError.exit_code,
    } <= codes
    parser = build_parser()
    for sub in (parser, *_subparsers(parser).values()):
        text = sub.format_help()
        for code, meaning in EXIT_STATUSES:
            assert re.search(rf"^  {code}\s+{re.escape(meaning)}$", text, re.M), (sub.prog, code)


def test_readme_lists_every_exit_status() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code, meaning in EXIT_STATUSES:
        assert f"| {code} | {meaning} |" in readme, code


# --- exit statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ConfigurationError("bad option"), 2),
        (NoMediaError("media stopped arriving"), 3),
        (AuthenticationError("refused", status=401), 5),
        (NetworkError("connection refused"), 6),
        (RequestTimeoutError("timed out"), 6),
        (ConnectTimeoutError("ICE timed out"), 7),
        (WhepError("WHEP POST failed", status=500), 7),
        (ServerError("HTTP 500", status=500), 1),
        (OSError("disk full"), 1),
    ],
)
def test_a_command_exits_with_the_status_of_its_error(
    error: Exception, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fail(stop: Any) -> int:
        raise error

    assert run_command("probe", fail) == status
    line = capsys.readouterr().err
    assert line.startswith(f"avatar-rtc probe: {type(error).__name__}: ") and line.count("\n") == 1


def test_broken_pipe_is_left_to_main() -> None:
    async def write(stop: Any) -> int:
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        run_command("probe", write)


class _ClosedStdout:
    """A stdout whose reader went away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_qa_report_into_a_closed_pipe_is_exit_141(monkeypatch: pytest.MonkeyPatch) -> None:
    class Report:
        verdict = "pass"

        def to_dict(self) -> dict[str, Any]:
            return {"verdict": "pass"}

    monkeypatch.setattr("avatar_rtc.qa.analyse_file", lambda path, thresholds: Report())
    monkeypatch.setattr(sys, "stdout", _ClosedStdout())
    assert main(["qa", "some.mkv"]) == EXIT_BROKEN_PIPE


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        # fails at once (nothing listens on port 9): the report is printed all the same
        ["probe", "--whep-url", "http://127.0.0.1:9/whep", "--connect-timeout", "5"],
    ],
)
def test_a_closed_stdout_is_exit_141_without_traceback(argv: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written (`| head -c 0`)
    env = cli_env()
    del env["PYTHONUNBUFFERED"]  # buffered, as for a user (unbuffered, argparse hides it)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "avatar_rtc.cli", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        os.close(write)
    assert result.returncode == EXIT_BROKEN_PIPE, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr


def test_ctrl_c_outside_a_command_is_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while a handler imports the media stack (before its own signal handling)."""

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("avatar_rtc.cli.probe_cmd.run", interrupted)
    assert main(["probe"]) == 130
    assert capsys.readouterr().err == "avatar-rtc probe: interrupted\n"


def test_ctrl_c_while_the_media_stack_imports_waits_for_the_import(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A C extension interrupted mid-import (numpy's) raised an ImportError traceback (CI):
    the command's imports now run with Ctrl-C held, and it is raised once they are in."""
    (tmp_path / "interrupted_stack.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nFINISHED = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("avatar_rtc.cli.probe_cmd.SESSION_STACK", ("interrupted_stack",))
    ran: list[argparse.Namespace] = []

    def run(args: argparse.Namespace) -> int:
        ran.append(args)
        return 0

    monkeypatch.setattr("avatar_rtc.cli.probe_cmd.run", run)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    assert main(["probe"]) == 130
    assert capsys.readouterr().err == "avatar-rtc probe: interrupted\n"
    assert sys.modules["interrupted_stack"].FINISHED and not ran
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.delitem(sys.modules, "interrupted_stack")


def test_imports_held_run_before_the_handler_with_ctrl_c_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handler starts with the default Ctrl-C handler (asyncio.run() installs its own
    only over that one), and an ignored Ctrl-C (a runner in the background) stays ignored."""
    seen: list[object] = []
    monkeypatch.setattr(
        "avatar_rtc.cli.probe_cmd.run", lambda args: seen.append(signal.getsignal(signal.SIGINT))
    )
    monkeypatch.setattr("avatar_rtc.cli.probe_cmd.SESSION_STACK", ("json",))
    main(["probe"])
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        main(["probe"])
    finally:
        signal.signal(signal.SIGINT, previous)
    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # where no handler may be set
        thread.submit(main, ["probe"]).result()
    assert seen == [signal.default_int_handler, signal.SIG_IGN, signal.default_int_handler]


def test_an_error_line_carries_the_errors_notes() -> None:
    """A wrong KS without --avatar-id fails at the catalog the user never asked for: the note
    says why it was asked, on the same line."""
    error = AuthenticationError("catalog failed: HTTP 401: Invalid Kaltura Session", status=401)
    error.add_note("(no avatar_id given and $AVATAR_ID unset: the catalog was asked)")
    assert error_line("probe", error) == (
        "avatar-rtc probe: AuthenticationError: catalog failed: HTTP 401: Invalid Kaltura "
        "Session (no avatar_id given and $AVATAR_ID unset: the catalog was asked)"
    )


def test_python_dash_m_avatar_rtc_is_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "avatar_rtc", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.startswith("avatar-rtc "), out.stderr
