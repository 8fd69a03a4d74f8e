"""An MCP tool on the embedded model: the call comes from constrained decoding, as a
function call does, and Continuo runs it inside the response."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from continuo.api.app import create_app
from continuo.backends import local
from continuo.config import load_config
from tests.support.mcp_servers import OwnMCPServer
from tests.support.servers import ServerThread

if local.default_model_path() is None:
    pytest.skip("the local model is not installed (scripts/install.sh installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def mcp() -> Iterator[OwnMCPServer]:
    server = OwnMCPServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    config = load_config(None)
    config.database.url = f"sqlite:///{tmp_path_factory.mktemp('mcplocal') / 'continuo.db'}"
    config.security.allow_private_urls = True  # the test's MCP server is on 127.0.0.1
    running = ServerThread(create_app(config)).start()
    with openai.OpenAI(base_url=f"{running.url}/v1", api_key="none", max_retries=0, timeout=120) as client:
        yield client
    running.stop()


def test_the_embedded_model_calls_an_mcp_tool(llm: openai.OpenAI, mcp: OwnMCPServer) -> None:
    spec = {
        "type": "mcp",
        "server_label": "t",
        "server_url": mcp.url,
        "require_approval": "never",
        "allowed_tools": ["add"],
    }
    response = llm.responses.create(
        model="local",
        input="Add 2 and 3 with the tool.",
        tools=[spec],  # type: ignore[list-item]
        tool_choice={"type": "mcp", "server_label": "t", "name": "add"},  # type: ignore[typeddict-item]
        max_tool_calls=1,
        max_output_tokens=128,
        temperature=0,
    )
    assert [item.type for item in response.output][:2] == ["mcp_list_tools", "mcp_call"], response.model_dump_json()[
        :3000
    ]
    call = response.output[1]
    arguments = json.loads(call.arguments)  # type: ignore[union-attr]
    assert call.status == "completed"  # type: ignore[union-attr]
    assert call.output == str(arguments["a"] + arguments["b"])  # type: ignore[union-attr]
    assert mcp.state.calls == [("add", {"a": arguments["a"], "b": arguments["b"]})]
    # Then the model answered in words (the tools were no longer offered).
    assert response.output[-1].type == "message"
