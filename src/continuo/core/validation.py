"""Small checks that raise OpenAI-shaped 400s naming the offending parameter."""

from __future__ import annotations

from typing import Any

from continuo.errors import InvalidRequest


def _name_of(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in (
        (bool, "a boolean"),
        (str, "a string"),
        (int, "an integer"),
        (float, "a decimal"),
        (dict, "an object"),
        (list, "an array"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def invalid_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_name_of(value)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, value: Any, supported: list[str] | tuple[str, ...]) -> InvalidRequest:
    choices = ", ".join(f"'{s}'" for s in supported)
    return InvalidRequest(
        f"Invalid value: '{value}'. Supported values are: {choices}.",
        param=param,
        code="invalid_value",
    )


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def opt_str(body: dict[str, Any], key: str, param: str | None = None) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid_type(param or key, "a string", value)
    return value


def req_str(body: dict[str, Any], key: str, param: str | None = None) -> str:
    if body.get(key) is None:
        raise missing(param or key)
    value = opt_str(body, key, param)
    assert value is not None
    return value


def opt_bool(body: dict[str, Any], key: str, default: bool | None = None) -> bool | None:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid_type(key, "a boolean", value)
    return value


# Integers a request may carry anywhere: what a signed 64-bit column (and orjson) holds.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Token counts and other counters: what a 32-bit signed integer holds.
INT32_MAX = 2**31 - 1
# The deepest nesting a request may have. orjson reads 1,024 levels but writes only 254,
# and a request's fields are stored and sent inside a few more levels (the response, its
# event), so a much lower limit keeps every stored or forwarded value writable.
MAX_DEPTH = 128


def check_json(body: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse what could be read but not written again: nesting deeper than ``max_depth``
    and integers outside 64 bits, wherever they are (unknown fields are kept and echoed).
    The 400 names the top-level field."""
    # Strings, booleans, floats and null are most of a body: passed over where they are
    # met, before anything is pushed (a three-field body walked a node each before).
    stack: list[tuple[Any, int, str | None]] = [(body, 0, None)]
    while stack:
        value, depth, field = stack.pop()
        named = False  # the items are (key, value): an object's fields, each naming what is under it
        if isinstance(value, dict):
            named = field is None
            inner: Any = value.items() if named else value.values()
        elif isinstance(value, list):
            inner = value
        else:
            _check_int(value, field)
            continue
        if depth >= max_depth:
            raise _too_deep(field, max_depth)
        depth += 1
        for item in inner:
            if named:
                key, item = item
            else:
                key = field
            kind = type(item)
            if kind is str or kind is bool or kind is float or item is None:
                continue
            if kind is int:
                _check_int(item, key)
            else:
                stack.append((item, depth, key))


def _check_int(value: Any, field: str | None) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise InvalidRequest(
            f"Invalid '{field}': an integer in it is outside the 64-bit range.",
            param=field,
            code="integer_out_of_range",
        )


def _too_deep(field: str | None, limit: int) -> InvalidRequest:
    where = f"'{field}'" if field is not None else "the request body"
    return InvalidRequest(
        f"Invalid {where}: nested more than {limit} levels deep.",
        param=field,
        code="nesting_too_deep",
    )


def opt_int(
    body: dict[str, Any], key: str, *, minimum: int | None = None, maximum: int | None = INT32_MAX
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise invalid_type(key, "an integer", value)
    _check_range(key, value, minimum, maximum, "integer")
    return value


def opt_number(
    body: dict[str, Any], key: str, *, minimum: float | None = None, maximum: float | None = None
) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_type(key, "a decimal", value)
    _check_range(key, value, minimum, maximum, "decimal")
    return value


def _check_range(key: str, value: float, minimum: float | None, maximum: float | None, kind: str) -> None:
    if minimum is not None and value < minimum:
        raise InvalidRequest(
            f"Invalid '{key}': {kind} below minimum value. Expected a value >= {minimum}, but got {value} instead.",
            param=key,
            code=f"{kind}_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise InvalidRequest(
            f"Invalid '{key}': {kind} above maximum value. Expected a value <= {maximum}, but got {value} instead.",
            param=key,
            code=f"{kind}_above_max_value",
        )


def opt_dict(body: dict[str, Any], key: str, param: str | None = None) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise invalid_type(param or key, "an object", value)
    return value


def metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    """Metadata: at most 16 string values, keys of at most 64 characters, values of at most 512."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_type(param, "an object", value)
    if len(value) > 16:
        raise InvalidRequest(
            f"Invalid '{param}': too many properties. Expected an object with at most 16 "
            f"properties, but got an object with {len(value)} properties instead.",
            param=param,
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > 64:
            raise InvalidRequest(
                f"Invalid '{param}': key '{key[:80]}' is too long. Expected a key of at most "
                f"64 characters, but got {len(key)} characters instead.",
                param=param,
                code="invalid_value",
            )
        if not isinstance(item, str):
            raise invalid_type(f"{param}.{key}", "a string", item)
        if len(item) > 512:
            raise InvalidRequest(
                f"Invalid '{param}.{key}': string too long. Expected a string with maximum "
                f"length 512, but got a string with length {len(item)} instead.",
                param=f"{param}.{key}",
                code="string_above_max_length",
            )
    return dict(value)
