"""Our test MCP server over stdio, for ``[[mcp_servers]]`` started by command."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.mcp_servers import ToolState, make_server

if __name__ == "__main__":
    make_server(ToolState()).run("stdio")
