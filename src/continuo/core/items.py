"""Input items: validation and normalization into the stored, lossless shape.

Every item gets a ``type`` and an ``id``; a message's string content becomes a list of
parts, as OpenAI lists input items. Fields this module does not know are kept.
"""

from __future__ import annotations

from typing import Any

from continuo.core.validation import invalid_type, invalid_value, missing
from continuo.errors import InvalidRequest
from continuo.ids import ITEM_ID_MAX, new_item_id, well_formed

ROLES = ("user", "assistant", "system", "developer")
ITEM_TYPES = (
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "item_reference",
    "custom_tool_call",
    "custom_tool_call_output",
    "compaction",
    "mcp_list_tools",
    "mcp_call",
    "mcp_approval_request",
    "mcp_approval_response",
)
# The only URLs an image or file may come by: others (file://, ftp://, ...) could make the
# upstream, or Continuo itself, read what it should not.
URL_SCHEMES = ("data:", "https://", "http://")
INPUT_PARTS = ("input_text", "input_image", "input_file")
ASSISTANT_PARTS = ("output_text", "refusal", "input_text")


def user_message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }


def normalize_input(value: Any, param: str = "input") -> list[dict[str, Any]]:
    """Validate ``input`` (a string or a list of items) and return normalized items."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [user_message(value)]
    elif isinstance(value, list):
        items = [_normalize_item(item, f"{param}[{i}]") for i, item in enumerate(value)]
    else:
        raise invalid_type(param, "a string or an array of input items", value)
    for item in items:
        if item["type"] != "item_reference" and not item.get("id"):
            item["id"] = new_item_id(item["type"])
    return items


def _normalize_item(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise invalid_type(where, "an object", raw)
    item: dict[str, Any] = dict(raw)
    kind = item.get("type")
    if kind is None:
        if "role" not in item:
            raise missing(f"{where}.type")
        kind = item["type"] = "message"
    if not isinstance(kind, str):
        raise invalid_type(f"{where}.type", "a string", kind)
    if kind not in ITEM_TYPES:
        raise invalid_value(f"{where}.type", kind, ITEM_TYPES)
    if "id" in item and item["id"] is not None:
        if not isinstance(item["id"], str):
            raise invalid_type(f"{where}.id", "a string", item["id"])
        # A reference to an id that cannot exist is simply not found (see core.context).
        if kind != "item_reference" and not well_formed(item["id"], ITEM_ID_MAX):
            raise InvalidRequest(
                f"Invalid '{where}.id': expected an id of 1 to {ITEM_ID_MAX} characters without control characters.",
                param=f"{where}.id",
                code="invalid_value",
            )
    if kind == "message":
        _message(item, where)
    elif kind in ("function_call", "custom_tool_call"):
        _require_str(item, "call_id", where)
        _require_str(item, "name", where)
        key = "arguments" if kind == "function_call" else "input"
        _require_str(item, key, where)
        item.setdefault("status", "completed")
    elif kind in ("function_call_output", "custom_tool_call_output"):
        _require_str(item, "call_id", where)
        output = item.get("output")
        if output is None:
            raise missing(f"{where}.output")
        if not isinstance(output, (str, list)):
            raise invalid_type(f"{where}.output", "a string or an array of content parts", output)
        if isinstance(output, list):
            for j, part in enumerate(output):
                _part(part, f"{where}.output[{j}]", INPUT_PARTS)
        item.setdefault("status", "completed")  # required when the item is listed back
    elif kind == "reasoning":
        summary = item.setdefault("summary", [])
        if not isinstance(summary, list):
            raise invalid_type(f"{where}.summary", "an array", summary)
        for j, part in enumerate(summary):
            _text_part(part, f"{where}.summary[{j}]")
        content = item.get("content")
        if content is not None and not isinstance(content, list):
            raise invalid_type(f"{where}.content", "an array", content)
        for j, part in enumerate(content or ()):
            _text_part(part, f"{where}.content[{j}]")
    elif kind == "item_reference":
        _require_str(item, "id", where)
    elif kind == "compaction":
        # Opened (and verified) when the context is built: core/compaction.py.
        _require_str(item, "encrypted_content", where)
    elif kind == "mcp_approval_response":
        _require_str(item, "approval_request_id", where)
        if not isinstance(item.get("approve"), bool):
            raise invalid_type(f"{where}.approve", "a boolean", item.get("approve"))
    elif kind in ("mcp_call", "mcp_approval_request"):
        for key in ("server_label", "name", "arguments"):
            _require_str(item, key, where)
    return item


def _text_part(part: Any, where: str) -> None:
    """A part of a reasoning item: ``{"type": "summary_text" | "reasoning_text", "text": ...}``."""
    if not isinstance(part, dict):
        raise invalid_type(where, "an object", part)
    if part.get("type") is not None and not isinstance(part["type"], str):
        raise invalid_type(f"{where}.type", "a string", part["type"])
    _require_str(part, "text", where)


def _require_str(item: dict[str, Any], key: str, where: str) -> None:
    value = item.get(key)
    if value is None:
        raise missing(f"{where}.{key}")
    if not isinstance(value, str):
        raise invalid_type(f"{where}.{key}", "a string", value)


def _message(item: dict[str, Any], where: str) -> None:
    role = item.get("role")
    if role is None:
        raise missing(f"{where}.role")
    if role not in ROLES:
        raise invalid_value(f"{where}.role", role, ROLES)
    content = item.get("content")
    if content is None:
        raise missing(f"{where}.content")
    allowed = ASSISTANT_PARTS if role == "assistant" else INPUT_PARTS
    if isinstance(content, str):
        if role == "assistant":
            item["content"] = [{"type": "output_text", "text": content, "annotations": [], "logprobs": []}]
        else:
            item["content"] = [{"type": "input_text", "text": content}]
    elif isinstance(content, list):
        item["content"] = [_part(p, f"{where}.content[{j}]", allowed) for j, p in enumerate(content)]
    else:
        raise invalid_type(f"{where}.content", "a string or an array of content parts", content)
    item.setdefault("status", "completed")


def _part(part: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise invalid_type(where, "an object", part)
    kind = part.get("type")
    if kind is None:
        raise missing(f"{where}.type")
    if kind not in allowed:
        raise invalid_value(f"{where}.type", kind, allowed)
    if kind in ("input_text", "output_text"):
        _require_str(part, "text", where)
        if kind == "output_text":
            part.setdefault("annotations", [])
            part.setdefault("logprobs", [])
    elif kind == "refusal":
        _require_str(part, "refusal", where)
    elif kind == "input_image":
        url = part.get("image_url")
        if url is None:
            if part.get("file_id") is not None:
                raise InvalidRequest(
                    "Images by 'file_id' are not supported: send 'image_url' with an https or data URL.",
                    param=f"{where}.file_id",
                    code="unsupported_parameter",
                )
            raise missing(f"{where}.image_url")
        if not isinstance(url, str):
            raise invalid_type(f"{where}.image_url", "a string", url)
        if not url[:8].lower().startswith(URL_SCHEMES):
            raise InvalidRequest(
                f"Invalid '{where}.image_url': expected a data URL or an http(s) URL.",
                param=f"{where}.image_url",
                code="invalid_image_url",
            )
        part.setdefault("detail", "auto")  # required in a stored item; OpenAI's default
    elif kind == "input_file":
        for key in ("file_data", "file_url", "file_id", "filename"):
            if part.get(key) is not None and not isinstance(part[key], str):
                raise invalid_type(f"{where}.{key}", "a string", part[key])
        if not any(isinstance(part.get(k), str) for k in ("file_data", "file_url", "file_id")):
            raise missing(f"{where}.file_data")
        url = part.get("file_url")
        if url is not None and not url[:8].lower().startswith(URL_SCHEMES):
            raise InvalidRequest(
                f"Invalid '{where}.file_url': expected a data URL or an http(s) URL.",
                param=f"{where}.file_url",
                code="invalid_value",
            )
    return part
