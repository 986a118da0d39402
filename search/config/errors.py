"""pydantic's validation errors as one line per problem: the key, what is wrong, the value.

A union (``beta: 0.5 | [0.5, 1.0] | {low, high, log}``) makes pydantic report every member it
tried; only the errors of the member matching what the user wrote (scalar, list or range) are
kept, so a typo in a range is not buried under "input should be a valid number".
"""
from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from search.config.params import RANGE_MODELS


def _union_branch(part: Any) -> str | None:
    """pydantic names the union member it tried in the error location ("float", "list[float]",
    "function-after[_ordered(), FloatRange]"); map it to "scalar", "list" or a range model name."""
    if not isinstance(part, str):
        return None
    for name in RANGE_MODELS:
        if name in part:
            return name
    if part.startswith("list["):
        return "list"
    if part in {"float", "int", "str"}:
        return "scalar"
    return None


def _input_branch(value: Any) -> str:
    return "range" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


def _keep(err: dict[str, Any], value_at: dict[tuple[Any, ...], Any]) -> bool:
    """Of the errors a union produces, keep those of the member that matches what the user wrote."""
    for i, part in enumerate(err["loc"]):
        branch = _union_branch(part)
        if branch is None:
            continue
        wrote = _input_branch(value_at.get(err["loc"][:i], err.get("input")))
        if (branch in RANGE_MODELS) != (wrote == "range") or (branch == "list") != (wrote == "list"):
            return False
    return True


def _format_error(err: dict[str, Any], root: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if _union_branch(p) is None)
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(root, err["loc"][:-1])
        return f"{loc}: unknown key; allowed keys here: {', '.join(allowed)}"
    msg = err["msg"].removeprefix("Value error, ")
    if not loc:   # a rule across sections: its message names the keys; the input would be the whole file
        return f"(top level): {msg}"
    return f"{loc}: {msg} (got {err.get('input')!r})"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        branch = _union_branch(part)
        if branch in RANGE_MODELS:
            current = RANGE_MODELS[branch]
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            annotation = current.model_fields[part].annotation
            if not isinstance(annotation, type):   # an optional section (``X | None``): its model
                annotation = next((a for a in get_args(annotation)
                                   if isinstance(a, type) and issubclass(a, BaseModel)), None)
            current = annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def error_lines(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One sorted line per distinct problem of ``exc`` (raised validating ``root``)."""
    errors = exc.errors()
    # the value the user wrote at each union location (the input of the union member's error)
    value_at: dict[tuple[Any, ...], Any] = {}
    for err in errors:
        for i, part in enumerate(err["loc"]):
            if _union_branch(part) is not None and len(err["loc"]) == i + 1:
                value_at.setdefault(err["loc"][:i], err.get("input"))
    kept = [e for e in errors if _keep(e, value_at)] or errors
    return sorted({_format_error(e, root) for e in kept})
