"""The distributions are what a Python user expects: MIT license declared the PEP 639 way,
the tests in the sdist (and not in the wheel), a changelog entry for the version.

One build (sdist, then the wheel built from that sdist) with the installed setuptools: no
isolated environment, so nothing is downloaded (the ``dev`` extra brings ``build`` and
setuptools >= 77).
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.message import Message
from pathlib import Path

import pytest

import avatar_rtc

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return next(out.glob("*.tar.gz")), next(out.glob("*.whl"))


def _wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(zf.read(name))


def _tracked(*folders: str) -> set[str]:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", *folders], capture_output=True, text=True
    )
    return set(result.stdout.split())


def test_the_sdist_carries_the_tests_and_examples(dists: tuple[Path, Path]) -> None:
    sdist, _ = dists
    prefix = f"avatar_rtc-{VERSION}/"
    with tarfile.open(sdist) as tar:
        names = {n.removeprefix(prefix) for n in tar.getnames()}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= names
    assert {"tests/conftest.py", "tests/support.py", "examples/numpy_model.py"} <= names
    assert "tests/interop/peers/chromium_sender/sender.html" in names  # non-Python test files
    assert not [n for n in names if n.endswith(".pyc")]
    if shutil.which("git") and (ROOT / ".git").exists():
        missing = _tracked("tests", "examples", "scripts", "docs") - names
        assert not missing, f"tracked but not in the sdist: {sorted(missing)}"


def test_the_wheel_declares_the_mit_license(dists: tuple[Path, Path]) -> None:
    _, wheel = dists
    meta = _wheel_metadata(wheel)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert not [c for c in meta.get_all("Classifier", []) if c.startswith("License ::")]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        license_text = zf.read(f"avatar_rtc-{VERSION}.dist-info/licenses/LICENSE").decode()
    assert license_text.startswith("MIT License")
    assert "avatar-rtc contributors" in license_text
    assert not [n for n in names if n.startswith(("tests/", "examples/"))]


def test_the_wheel_lists_the_tested_pythons(dists: tuple[Path, Path]) -> None:
    meta = _wheel_metadata(dists[1])
    classifiers = meta.get_all("Classifier", [])
    assert meta["Requires-Python"] == ">=3.11"
    assert {"Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.12"} <= (
        set(classifiers)
    )
    assert "Typing :: Typed" in classifiers
    assert meta.get_all("Project-URL")


def test_the_version_has_a_changelog_entry() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert avatar_rtc.__version__ == VERSION
    assert "## [Unreleased]" in changelog
    assert f"## [{VERSION}] - " in changelog
