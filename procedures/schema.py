"""A procedure's parameters as a JSON schema (from its signature, annotations and docstring), and the
validation of parameters against it before anything is queued. Pure: no Django, no eval of user strings
(a string from a form or the CLI is converted by the schema's type with int(), float() or a word list)."""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from typing import Annotated, Any, Literal, get_args, get_origin

from jsonschema import Draft202012Validator

from procedures.sdk import Param

_SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean"}
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}


class SchemaError(Exception):
    """A procedure whose signature cannot be described (the module is reported with this message)."""


def _type_schema(annotation, where: str) -> dict:
    if annotation is inspect.Parameter.empty:
        raise SchemaError(f"{where}: needs a type annotation (int, float, str, bool, Literal[...], list[...])")
    origin = get_origin(annotation)
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if origin is Literal:
        values = list(get_args(annotation))
        kinds = {type(v) for v in values}
        if not kinds <= {str, int, float, bool}:
            raise SchemaError(f"{where}: Literal values must be strings or numbers")
        out: dict[str, Any] = {"enum": values}
        if len(kinds) == 1:
            out["type"] = _SCALARS[kinds.pop()]
        return out
    if origin in (list, tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        if len(set(args)) != 1 or args[0] not in _SCALARS:
            raise SchemaError(f"{where}: lists must be of one scalar type, e.g. list[float]")
        return {"type": "array", "items": {"type": _SCALARS[args[0]]}}
    if origin in (types.UnionType, typing.Union):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            inner = _type_schema(args[0], where)
            return {**inner, "type": [inner["type"], "null"]} if "type" in inner else inner
    raise SchemaError(f"{where}: unsupported type {annotation!r}")


def docstring_parts(doc: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """(description, {name: (help, unit)}) from a docstring whose ``Parameters:`` (or ``Args:``) section
    has lines ``name (unit): help`` or ``name: help``."""
    doc = inspect.cleandoc(doc or "")
    match = re.search(r"^(Parameters|Args|Arguments):?\s*$", doc, flags=re.MULTILINE)
    description = (doc[:match.start()] if match else doc).strip()
    params: dict[str, tuple[str, str]] = {}
    if match:
        current = None
        for line in doc[match.end():].splitlines():
            m = re.match(r"^\s+(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$", line)
            if m:
                current = m.group(1)
                params[current] = (m.group(3).strip(), (m.group(2) or "").strip())
            elif current and line.strip() and line.startswith(" " * 8):
                help_text, unit = params[current]
                params[current] = (f"{help_text} {line.strip()}".strip(), unit)
            elif line.strip() and not line.startswith(" "):
                break
    return description, params


def procedure_schema(func, *, name: str, title: str = "") -> dict:
    """The JSON schema (draft 2020-12) of ``func``'s keyword parameters (the first one is the context)."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise SchemaError(f"{name}: cannot read the annotations: {exc}") from exc
    params = list(inspect.signature(func).parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise SchemaError(f"{name}: the first parameter must be the context (def {name}(ctx, *, ...))")
    description, documented = docstring_parts(func.__doc__ or "")
    properties: dict[str, dict] = {}
    required: list[str] = []
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise SchemaError(f"{name}: *args and **kwargs cannot be described; name each parameter")
        annotation = hints.get(p.name, inspect.Parameter.empty)
        meta = Param()
        if get_origin(annotation) is Annotated:
            base, *extras = get_args(annotation)
            meta = next((e for e in extras if isinstance(e, Param)), meta)
            annotation = base
        prop = _type_schema(annotation, f"{name}({p.name})")
        help_text, unit = documented.get(p.name, ("", ""))
        prop["title"] = p.name.replace("_", " ")
        if meta.help or help_text:
            prop["description"] = meta.help or help_text
        if meta.unit or unit:
            prop["x-unit"] = meta.unit or unit
        bounded = prop["items"] if prop.get("type") == "array" else prop  # a list's bounds are its values'
        if meta.minimum is not None:
            bounded["minimum"] = meta.minimum
        if meta.maximum is not None:
            bounded["maximum"] = meta.maximum
        if meta.min_items is not None:
            if prop.get("type") != "array":
                raise SchemaError(f"{name}({p.name}): min_items is for a list parameter")
            prop["minItems"] = meta.min_items
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
        else:
            default = list(p.default) if isinstance(p.default, tuple) else p.default
            if not isinstance(default, (int, float, str, bool, list, type(None))):
                raise SchemaError(f"{name}({p.name}): the default must be a JSON value")
            prop["default"] = default
        properties[p.name] = prop
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "title": title or name,
            "description": description, "properties": properties, "required": required,
            "additionalProperties": False}


def _coerce(value, prop: dict):
    """A string from a form or the command line, converted by the schema's type (no eval)."""
    if not isinstance(value, str):
        return value
    kind = prop.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    text = value.strip()
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            number = float(text)
            return number if math.isfinite(number) else value
        if kind == "boolean":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            return value
        if kind == "array":
            item = prop.get("items", {})
            parts = [t for t in re.split(r"[,\s]+", text.strip("[]")) if t]
            return [_coerce(t, item) for t in parts]
        if "enum" in prop and kind is None:
            for choice in prop["enum"]:
                if str(choice) == text:
                    return choice
    except ValueError:
        return value
    return value


def validate_params(schema: dict, params: dict | None) -> tuple[dict, list[str]]:
    """(the parameters with defaults filled in and strings converted, errors). Nothing is run on an error."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return {}, ["parameters must be an object of name: value"]
    props = schema.get("properties", {})
    clean = {}
    for key, value in params.items():
        clean[key] = _coerce(value, props[key]) if key in props else value
    for key, prop in props.items():
        if key not in clean and "default" in prop:
            clean[key] = prop["default"]
    errors = []
    for err in sorted(Draft202012Validator(schema).iter_errors(clean), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in err.path)
        errors.append(f"{where}: {err.message}" if where else err.message)
    for key, value in clean.items():  # JSON has no NaN/Infinity: they must not reach a device
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(f"{key}: must be a finite number")
    return clean, errors
