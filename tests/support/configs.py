"""Configs for the servers under test: parsed ones for servers in threads, files for
servers started from a file (subprocesses, the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from continuo.config import parse_config


def make_config(upstream_url: str, db_path: Path, **extra: Any) -> Any:
    raw: dict[str, Any] = {
        "database": {"url": f"sqlite:///{db_path}"},
        "providers": [
            {
                "name": "fake",
                "type": "chat_completions",
                "base_url": f"{upstream_url}/v1",
                "api_key_env": "CONTINUO_TEST_UPSTREAM_KEY",
                "headers": {"x-tenant": "team-7"},
                "max_retries": 0,
                "timeout": 5,
            }
        ],
        "models": [
            {"name": "gpt-test", "provider": "fake", "upstream_model": "fake-model"},
            {"name": "*", "provider": "fake"},
        ],
    }
    for section, values in extra.items():
        raw.setdefault(section, {}).update(values)
    return parse_config(raw)


def write_config(
    path: Path,
    *,
    database_url: str,
    upstream_url: str,
    database_options: str = "",
    provider_options: str = "",
    extra: str = "",
) -> Path:
    """One fake Chat Completions provider serving every model name, plus ``extra`` tables."""
    path.write_text(
        f"""
[database]
url = "{database_url}"
{database_options}

[[providers]]
name = "fake"
type = "chat_completions"
base_url = "{upstream_url}/v1"
max_retries = 0
{provider_options}

[[models]]
name = "*"
provider = "fake"

{extra}
"""
    )
    return path
