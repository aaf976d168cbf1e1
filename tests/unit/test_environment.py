"""environment.yml (the conda route) asks for exactly pyproject.toml's dependencies, with the same bounds."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
#: conda package names that differ from the PyPI names pyproject.toml uses
CONDA_TO_PYPI = {"pytorch": "torch"}
#: what the conda route adds for building (pyedgeeval is compiled from source), not a dependency of samkit
BUILD_ONLY = {"python", "pip", "cython", "cxx-compiler"}


def _split(spec: str):
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$", spec)
    if not match:
        raise ValueError(f"cannot read the requirement {spec!r}")
    name = match.group(1).lower().replace("_", "-")
    bounds = ",".join(sorted(b.strip() for b in match.group(2).split(",") if b.strip()))
    return name, bounds


def _pyproject():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = list(data["project"]["dependencies"]) + list(data["project"]["optional-dependencies"]["test"])
    return dict(_split(s) for s in specs)


def _environment():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            name, bounds = _split(entry)
            out[CONDA_TO_PYPI.get(name, name)] = bounds
    return env, out


def test_environment_matches_pyproject():
    env, deps = _environment()
    assert env["name"] == "samkit" and "conda-forge" in env["channels"]
    wanted = _pyproject()
    missing = sorted(set(wanted) - set(deps))
    extra = sorted(set(deps) - set(wanted) - BUILD_ONLY)
    assert not missing, f"environment.yml lacks {missing} (pyproject.toml asks for them)"
    assert not extra, f"environment.yml asks for {extra}, which pyproject.toml does not list"
    differ = {n: (deps[n], wanted[n]) for n in wanted if deps[n] != wanted[n]}
    assert not differ, f"version bounds differ (environment.yml, pyproject.toml): {differ}"


def test_readme_gives_the_conda_route():
    readme = (ROOT / "README.md").read_text()
    assert "conda env create -f environment.yml" in readme
