"""The pip route (requirements.txt, what CI installs) and the conda route (environment.yml)
must install exactly the same pinned packages; conda itself cannot run on the CI machines."""

from importlib import metadata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def requirement_lines(text):
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def test_every_requirement_is_pinned_exactly():
    for line in requirement_lines((ROOT / "requirements.txt").read_text()):
        name, sep, version = line.partition("==")
        assert sep and name and version, f"not pinned with ==: {line}"


def test_environment_yml_installs_exactly_the_requirements():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    dependencies = environment["dependencies"]
    assert "python=3.11" in dependencies
    pip_lists = [item["pip"] for item in dependencies if isinstance(item, dict) and "pip" in item]
    assert len(pip_lists) == 1
    conda_pins = sorted(pip_lists[0])
    pip_pins = sorted(requirement_lines((ROOT / "requirements.txt").read_text()))
    assert conda_pins == pip_pins


def test_installed_versions_match_the_pins():
    # The suite runs in the environment built from requirements.txt: prove it is that one.
    for line in requirement_lines((ROOT / "requirements.txt").read_text()):
        name, _, version = line.partition("==")
        assert metadata.version(name) == version, name
