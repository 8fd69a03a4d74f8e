"""Config files for servers started from a file (subprocesses, the CLI)."""

from __future__ import annotations

from pathlib import Path


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
