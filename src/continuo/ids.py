"""Identifiers in OpenAI's shapes (``resp_…``, ``msg_…``, ``fc_…``, ``rs_…``)."""

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


ITEM_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "mcp_list_tools": "mcpl",
    "mcp_call": "mcp",
    "mcp_approval_request": "mcpr",
    "mcp_approval_response": "mcpa",
}


def new_item_id(item_type: str) -> str:
    return new_id(ITEM_PREFIX.get(item_type, "item"))
