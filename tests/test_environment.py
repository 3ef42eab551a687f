"""The pinned environment files agree: environment.yml (conda users) and requirements.lock (what make
installs) must name the same versions, and every dependency the package declares must be pinned."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[normalise(match[1])] = match[2]
    return pins


@pytest.fixture(scope="module")
def lock() -> dict[str, str]:
    return parse_pins((ROOT / "requirements.lock").read_text().splitlines())


@pytest.fixture(scope="module")
def conda_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip section"
    return parse_pins(pip_sections[0])


def test_environment_yml_matches_lock(conda_pins: dict[str, str], lock: dict[str, str]) -> None:
    missing = sorted(set(conda_pins) - set(lock))
    assert not missing, f"environment.yml pins packages absent from requirements.lock: {missing}"
    differ = {n: (v, lock[n]) for n, v in conda_pins.items() if lock[n] != v}
    assert not differ, f"environment.yml and requirements.lock disagree (yml, lock): {differ}"


def test_declared_dependencies_are_pinned(conda_pins: dict[str, str], lock: dict[str, str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    names = {normalise(re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0]) for d in declared}
    assert not names - set(lock), f"declared but not in requirements.lock: {sorted(names - set(lock))}"
    assert not names - set(conda_pins), f"declared but not in environment.yml: {sorted(names - set(conda_pins))}"
