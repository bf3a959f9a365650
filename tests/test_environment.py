"""environment.yml installs the package from pyproject.toml and lists no drifting Python deps."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: Conda packages that are not Python libraries the book imports (toolchain only).
CONDA_TOOLCHAIN = {"python", "pip", "quarto"}


def _name(requirement: str) -> str:
    """Distribution name of a requirement string: ``'torch==2.14.1'`` → ``'torch'``."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert m, requirement
    return m.group(1).lower().replace("_", "-")


def _env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_environment_uses_conda_forge_python_311_and_quarto():
    env = _env()
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda
    assert {_name(d) for d in conda} == CONDA_TOOLCHAIN, (
        "conda lists only the toolchain; Python libraries come from pyproject.toml via pip"
    )


def test_environment_installs_the_package_with_the_dev_extra_via_pip():
    pip_sections = [d["pip"] for d in _env()["dependencies"] if isinstance(d, dict)]
    assert pip_sections == [["-e .[dev]"]], (
        "environment.yml must install exactly the package (editable, dev extra) with pip, "
        f"got {pip_sections}"
    )
    project = _pyproject()["project"]
    assert "dev" in project["optional-dependencies"]
    # The editable install resolves '.' to this directory: it must be the package's root.
    assert (ROOT / "pyproject.toml").is_file() and (ROOT / "src" / project["name"]).is_dir()


def test_pyproject_is_the_one_list_of_python_dependencies():
    project = _pyproject()["project"]
    deps = {_name(d): d for d in project["dependencies"]}
    assert deps["torch"].replace(" ", "") == "torch==2.14.1"
    assert deps["torchvision"].replace(" ", "") == "torchvision==0.29.1"
    for needed in ("numpy", "matplotlib", "pillow", "livelossplot", "tqdm"):
        assert needed in deps, needed
    dev = {_name(d) for d in project["optional-dependencies"]["dev"]}
    wanted = ("jupyter", "ipykernel", "nbval", "nbclient", "pytest", "hypothesis", "scipy", "ruff")
    for needed in wanted:
        assert needed in dev, needed
    assert {_name(d) for d in project["optional-dependencies"]["site"]} == {"quarto-cli"}
    assert "quarto-cli" not in dev, "quarto is optional: tests must never need it"


def test_no_other_requirement_lists_drift_from_pyproject():
    stray = [p.name for p in ROOT.glob("requirements*.txt")] + [
        p.name for p in ROOT.glob("environment*.y*ml") if p.name != "environment.yml"
    ]
    assert stray == [], f"a second list of dependencies would drift: {stray}"
