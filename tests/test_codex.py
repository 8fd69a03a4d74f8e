"""Codex CLI itself (a custom provider with wire_api = "responses") against Continuo, over
HTTP and over WebSocket mode.

The test command (scripts/test.sh, through scripts/install_codex.sh) installs the pinned
`@openai/codex` npm package into ./.tools/codex; CONTINUO_CODEX or a `codex` on PATH are
used otherwise. Without any of them (no npm) these tests are skipped, and fail in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.support.fake_chat import Reply
from tests.support.requires import unavailable

_LOCAL = Path(__file__).resolve().parents[1] / ".tools" / "codex" / "node_modules" / ".bin" / "codex"
CODEX = os.environ.get("CONTINUO_CODEX") or (str(_LOCAL) if _LOCAL.exists() else shutil.which("codex"))
if CODEX is None:
    unavailable("Codex CLI not found (scripts/install_codex.sh installs it with npm)")


def codex_home(tmp_path: Path, server_url: str, websockets: bool) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f"""
model = "gpt-test"
model_provider = "continuo"
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.continuo]
name = "Continuo"
base_url = "{server_url}/v1"
wire_api = "responses"
env_key = "CONTINUO_KEY"
supports_websockets = {"true" if websockets else "false"}
request_max_retries = 0
stream_max_retries = 0
"""
    )
    return home


def run_codex(home: Path, cwd: Path, prompt: str) -> subprocess.CompletedProcess[str]:
    assert CODEX is not None
    return subprocess.run(
        [CODEX, "exec", "--skip-git-repo-check", prompt],
        cwd=cwd,
        env={**os.environ, "CODEX_HOME": str(home), "CONTINUO_KEY": "unused", "RUST_LOG": "codex_api=info"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_codex_exec_gets_its_answer(server, upstream, tmp_path):
    home = codex_home(tmp_path, server.url, websockets=False)
    upstream.script(Reply(text="Hello from behind Continuo."))
    result = run_codex(home, tmp_path, "say hi")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Hello from behind Continuo." in result.stdout + result.stderr
    assert "Responses WebSocket" not in result.stderr
    sent = upstream.requests[-1]
    assert sent["stream"] is True
    assert sent["messages"][-1]["role"] == "user" and "say hi" in str(sent["messages"][-1]["content"])
    assert any(m["role"] == "system" for m in sent["messages"])


def test_codex_runs_a_shell_tool_round_trip_over_a_websocket(server, upstream, tmp_path):
    """Codex opens the socket, warms it up (generate: false, store: false), then sends
    each turn as only its new items with previous_response_id: the first turn's context
    and the tool call live only in the socket's cache."""
    home = codex_home(tmp_path, server.url, websockets=True)
    command = json.dumps({"cmd": "echo codex-ws-$((6*7))"})
    upstream.script(Reply(tool_calls=[("exec_command", command)]), Reply(text="It printed codex-ws-42."))
    result = run_codex(home, tmp_path, "run the echo")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "successfully connected to Responses WebSocket" in result.stderr
    assert "It printed codex-ws-42." in result.stdout
    # Two model calls (the warm-up calls none); the second carries the whole loop.
    assert len(upstream.requests) == 2
    messages = upstream.requests[-1]["messages"]
    assert any(m["role"] == "user" and "run the echo" in str(m["content"]) for m in messages)
    call, output = messages[-2], messages[-1]
    assert call["tool_calls"][0]["function"]["name"] == "exec_command"
    assert output["role"] == "tool" and output["tool_call_id"] == call["tool_calls"][0]["id"]
    assert "codex-ws-42" in output["content"]
