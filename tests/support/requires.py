"""Test dependencies the install always provides (scripts/install.sh --dev): a developer
without one gets a skip, CI (``CI=true``) gets a failure, so a broken install cannot
pass by skipping the tests that need it."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip the whole module here; fail it in CI."""
    if in_ci():
        pytest.fail(f"{reason}; CI installs it, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require(module: str, reason: str) -> ModuleType:
    """Import ``module``, or skip the test module (fail it in CI) when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable(f"{reason} ({exc})")
