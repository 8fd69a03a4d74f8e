"""Configuration mistakes as one line each: the file, the key path and the problem."""

from __future__ import annotations

import difflib
import json
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """One or more configuration mistakes. ``problems`` are ``key: what is wrong`` lines;
    ``where`` (the file) prefixes each when printed."""

    def __init__(self, problems: str | list[str], where: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.where = where
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.where}: {p}" if self.where else p for p in self.problems]


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, dict) else "a table"
    if isinstance(value, list):
        text = "an array"
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the table at ``loc``."""
    cls: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None
        annotation = cls.model_fields[part].annotation
        while typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        cls = annotation
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _unknown(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    key = str(loc[-1])
    owner = _model_at(root, loc[:-1])
    what = "section" if len(loc) == 1 else "key"
    if owner is None:
        return f"unknown {what}"
    known = list(owner.model_fields)
    if close := difflib.get_close_matches(key, known, n=1, cutoff=0.6):
        return f"unknown {what} (did you mean {close[0]!r}?)"
    return f"unknown {what} (known: {', '.join(known)})"


_TYPES = {
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "list_type": "expected an array",
}


def _message(error: Any, root: type[BaseModel]) -> tuple[str, str]:
    loc: tuple[Any, ...] = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "continuo":
        extra = str(ctx.get("key", ""))
        path = _path(loc)
        if extra:
            path = f"{path}{'' if extra.startswith('[') or not path else '.'}{extra}"
        return path, error["msg"]
    path = _path(loc)
    if kind == "extra_forbidden":
        return path, _unknown(root, loc)
    if kind == "missing":
        return path, "required"
    value = error.get("input")
    if kind in _TYPES:
        return path, f"{_TYPES[kind]}, got {_show(value)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        limit = next(iter(ctx.values()))
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return path, f"must be {sign} {limit}, got {_show(value)}"
    if kind == "literal_error":
        allowed = ctx.get("expected", "")
        message = f"must be one of {allowed}, got {_show(value)}"
        choices = [c.strip().strip("'") for c in str(allowed).replace(" or ", ", ").split(",")]
        if isinstance(value, str) and (close := difflib.get_close_matches(value, choices, n=1)):
            message += f" (did you mean {close[0]!r}?)"
        return path, message
    if kind == "string_pattern_mismatch":
        field = str(loc[-1])
        hints = {"hash": "sha256:<64 lowercase hex digits>", "base_url": "an http:// or https:// URL"}
        return path, f"must look like {hints.get(field, ctx.get('pattern'))}, got {_show(value)}"
    if kind == "string_too_short":
        return path, "must not be empty"
    if kind == "string_too_long":
        return path, f"must be at most {ctx.get('max_length')} characters"
    return path, str(error["msg"])


def describe(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One ``path: problem`` line per mistake, in file order as far as pydantic tells."""
    lines = []
    for error in exc.errors(include_url=False):
        path, message = _message(error, root)
        lines.append(f"{path}: {message}" if path else message)
    return list(dict.fromkeys(lines))
