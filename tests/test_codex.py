"""Codex CLI itself (a custom provider with wire_api = "responses") against Continuo.

Codex ships as a 400 MB npm package, so the test suite does not install it: this test runs
where `codex` is on PATH or CONTINUO_CODEX names the binary (for example after
`npm install @openai/codex` in a scratch folder), and is skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.fake_chat import Reply

CODEX = os.environ.get("CONTINUO_CODEX") or shutil.which("codex")
pytestmark = pytest.mark.skipif(CODEX is None, reason="Codex CLI not found (set CONTINUO_CODEX)")


def test_codex_exec_gets_its_answer(server, upstream, tmp_path):
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f"""
model = "gpt-test"
model_provider = "continuo"

[model_providers.continuo]
name = "Continuo"
base_url = "{server.url}/v1"
wire_api = "responses"
env_key = "CONTINUO_KEY"
"""
    )
    upstream.script(Reply(text="Hello from behind Continuo."))
    assert CODEX is not None
    result = subprocess.run(
        [CODEX, "exec", "--skip-git-repo-check", "say hi"],
        cwd=tmp_path,
        env={**os.environ, "CODEX_HOME": str(home), "CONTINUO_KEY": "unused"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Hello from behind Continuo." in result.stdout + result.stderr
    sent = upstream.requests[-1]
    assert sent["stream"] is True
    assert sent["messages"][-1]["role"] == "user" and "say hi" in str(sent["messages"][-1]["content"])
    assert any(m["role"] == "system" for m in sent["messages"])
