"""``make book``'s rendering step (``make site``) on its three paths, with stand-ins for Quarto.

The Makefile runs in a temporary folder (a copy of ``Makefile`` and ``pyproject.toml``) with
a stand-in ``.venv`` whose install stamp is fresh, so nothing is installed or executed:

* no ``quarto`` anywhere and the ``quarto-cli`` install fails (as on a machine without
  network): ``make site`` stops with the message that says how to install Quarto;
* no ``quarto``, and the install puts one into ``.venv``: that one renders;
* ``BOOK_REPO_URL`` set: the render sees a ``repo`` profile with that repository, and the
  profile file is gone afterwards (no dirty clone); unset, there is no profile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

STUB_QUARTO = """#!/bin/sh
# stands in for quarto: records its arguments, the profile and the profile file
{{
  echo "args: $*"
  echo "profile: [$QUARTO_PROFILE]"
  if [ -f _quarto-repo.yml ]; then cat _quarto-repo.yml; fi
}} > "{log}"
"""


@pytest.fixture()
def project(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (2**31, 2**31))  # newer than pyproject.toml: no install
    return tmp_path


def _make(project: Path, *args: str, path_dirs: list[Path] = ()) -> subprocess.CompletedProcess:
    # PATH without any quarto: only the folders make and sh need
    bins = {str(Path(shutil.which(t)).parent) for t in ("make", "sh", "rm", "printf", "cp")}
    env = {
        "PATH": os.pathsep.join([*map(str, path_dirs), *sorted(bins)]),
        "HOME": str(project),
    }
    return subprocess.run(
        ["make", "--no-print-directory", "site", "VENV=venv", "QUARTO=", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )


def _stub(project: Path, where: Path) -> Path:
    log = project / "quarto-called.txt"
    where.write_text(STUB_QUARTO.format(log=log))
    where.chmod(0o755)
    return log


def test_without_quarto_and_failed_install_says_how_to_install(project):
    result = _make(project, "QUARTO_INSTALL=false")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "installing the quarto-cli package" in out
    assert "Quarto could not be installed, so the site was not rendered" in out
    assert "conda env create -f environment.yml" in out and "quarto.org" in out
    assert not (project / "quarto-called.txt").exists()


def test_without_quarto_installs_quarto_cli_into_the_venv_and_renders(project):
    stub = project / "stub-quarto"
    log = _stub(project, stub)
    result = _make(project, f"QUARTO_INSTALL=cp {stub} venv/bin/quarto")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "venv/bin/quarto").is_file()
    called = log.read_text()
    assert "args: render" in called and "profile: []" in called
    assert "repo-url" not in called  # no repository configured: no links
    assert "The book is in _book/index.html" in result.stdout


def test_repository_url_from_the_publisher_becomes_a_profile(project):
    bindir = project / "bin"
    bindir.mkdir()
    log = _stub(project, bindir / "quarto")
    url = "https://github.com/someone/concrete-book"
    result = subprocess.run(
        ["make", "--no-print-directory", "site", "VENV=venv", f"QUARTO={bindir / 'quarto'}",
         f"BOOK_REPO_URL={url}"],
        cwd=project, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(project)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    called = log.read_text()
    assert "profile: [repo]" in called
    assert f'repo-url: "{url}"' in called and "repo-actions: [source, issue]" in called
    assert not (project / "_quarto-repo.yml").exists(), "the profile file stays behind"
