"""Without the qa extra, every command that needs it says so first, as a usage error (exit 2):
`qa` said it as exit 1, and `fleet --job qa` started its sessions, lost the job that failed
to import scipy, and waited for ever (Ctrl-C too)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from avatar_rtc.cli.main import main


@pytest.fixture
def no_qa_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "avatar_rtc.qa" or m.startswith("avatar_rtc.qa.")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, and restored after
    monkeypatch.setitem(sys.modules, "scipy", None)  # "import scipy" raises ImportError


@pytest.mark.usefixtures("no_qa_extra")
@pytest.mark.parametrize(
    "argv",
    [
        ["qa", "some.mp4"],
        ["fleet", "--sessions", "1", "--job", "qa", "--out", "{out}"],
        ["fleet", "--sessions", "1", "--job", "record", "--plot", "{out}/f.png", "--out", "{out}"],
        ["record", "{out}/r.mp4", "--report"],
    ],
)
def test_a_command_that_needs_the_qa_extra_says_so_first(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([a.format(out=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "pip install 'avatar-rtc[qa]'" in err and "scipy" in err, err
    assert list(tmp_path.iterdir()) == []  # nothing started


@pytest.mark.usefixtures("no_qa_extra")
def test_importing_avatar_rtc_qa_without_the_extra_names_it() -> None:
    with pytest.raises(ImportError, match=r"pip install 'avatar-rtc\[qa\]'"):
        import avatar_rtc.qa  # noqa: F401
