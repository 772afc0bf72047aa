"""Procedure modules from the procedures folder (no Django): scan, compare, load, describe.

ODIN's sequencer loads modules from a folder and offers *Detect changes* and *Reload*; so does PyROS.
A module is loaded from its source text into a fresh module object (never imported by name, so two
versions never mix); an import or syntax error is kept with its traceback and breaks no other module.
The web process never executes operator code: ``describe_directory`` runs in a short-lived subprocess
(``python -m procedures.loader DIR``) and returns plain JSON; the worker runs the source stored at the
last reload, so what was validated is what runs.

Script procedures: every file of the folder's ``scripts/`` subfolder (``*.py``, or any executable with a
``#!`` line) whose header declares it between ``# --- pyros procedure ---`` and ``# --- end ---`` in TOML
(title, description, timeout_s, sky, tags, grace_s and one ``[params.NAME]`` table per parameter: type,
default, minimum, maximum, enum, items, unit, help). The loader turns the header into the same JSON schema
as a function's signature, and stores a generated module whose procedure runs the script
(``procedures.external.script_procedure``) only if the file still has the SHA-256 seen at the reload."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import sys
import tomllib
import traceback
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jsonschema import Draft202012Validator

from procedures.schema import SchemaError, procedure_schema
from procedures.sdk import SKY_CHOICES

MODULE_PREFIX = "pyros_procedures"
SCRIPTS_DIR = "scripts"
SCRIPT_HEADER_START = re.compile(r"^\s*#\s*---\s*pyros procedure\s*---\s*$")
SCRIPT_HEADER_END = re.compile(r"^\s*#\s*---\s*end\s*---\s*$")
# The item's timeout is the script's plus this: the script is interrupted (and its outcome recorded) at its
# own timeout before the queue manager would kill the whole worker.
SCRIPT_TIMEOUT_MARGIN_S = 10.0
_SCRIPT_KEYS = {"title", "description", "timeout_s", "sky", "tags", "grace_s", "params"}
_PARAM_KEYS = {"type", "default", "minimum", "maximum", "enum", "items", "unit", "help", "title"}
_PARAM_TYPES = ("integer", "number", "string", "boolean", "array")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class ProcedureSpec:
    name: str
    function: str
    title: str
    description: str
    schema: dict
    timeout_s: float
    sky: str
    tags: list[str] = field(default_factory=list)


@dataclass
class ModuleSpec:
    name: str
    path: str
    sha256: str
    source: str
    error: str = ""
    procedures: list[ProcedureSpec] = field(default_factory=list)


def module_files(directory: str | Path) -> dict[str, Path]:
    """``{module name: path}`` of the ``*.py`` files of the folder (not ``_private.py``), sorted, then the
    script files of its ``scripts/`` subfolder as ``scripts/<file name>``."""
    folder = Path(directory)
    if not folder.is_dir():
        return {}
    modules = {p.stem: p for p in sorted(folder.glob("*.py")) if not p.name.startswith(("_", "."))}
    return {**modules, **script_files(folder)}


def script_files(directory: str | Path) -> dict[str, Path]:
    """``{"scripts/<file name>": path}`` of the files of the folder's ``scripts/`` subfolder (not hidden,
    not ``_private``, not backups ``~``)."""
    folder = Path(directory) / SCRIPTS_DIR
    if not folder.is_dir():
        return {}
    return {f"{SCRIPTS_DIR}/{p.name}": p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(("_", ".")) and not p.name.endswith(("~", ".pyc"))}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def module_from_source(name: str, path: str, source: str) -> types.ModuleType:
    """Execute ``source`` as a fresh module ``pyros_procedures.<name>`` (raises what its import raises)."""
    module = types.ModuleType(f"{MODULE_PREFIX}.{name}")
    module.__file__ = path
    code = compile(source, path, "exec")
    sys.modules[module.__name__] = module  # dataclasses and pickling look a module up by name
    try:
        exec(code, module.__dict__)  # noqa: S102 - operator code from the procedures folder, not user input
    except BaseException:
        sys.modules.pop(module.__name__, None)
        raise
    return module


def procedures_of(module: types.ModuleType) -> dict[str, types.FunctionType]:
    """The functions of the module marked with ``@procedure`` (defined in it, not imported)."""
    return {name: obj for name, obj in vars(module).items()
            if inspect.isfunction(obj) and hasattr(obj, "__pyros_procedure__")
            and obj.__module__ == module.__name__}


def describe_module(name: str, path: Path) -> ModuleSpec:
    source = path.read_text(encoding="utf-8", errors="replace")
    spec = ModuleSpec(name=name, path=str(path), sha256=hashlib.sha256(source.encode()).hexdigest(), source=source)
    try:
        module = module_from_source(name, str(path), source)
        for fname, func in procedures_of(module).items():
            info = func.__pyros_procedure__
            schema = procedure_schema(func, name=fname, title=info.title)
            spec.procedures.append(ProcedureSpec(
                name=fname, function=fname, title=info.title, description=schema["description"], schema=schema,
                timeout_s=info.timeout_s, sky=info.sky, tags=list(info.tags)))
    except SchemaError as exc:
        spec.error, spec.procedures = f"SchemaError: {exc}", []
    except BaseException:  # SyntaxError, ImportError, SystemExit...: reported, no other module affected
        spec.error, spec.procedures = traceback.format_exc(limit=-8), []
    return spec


# --- Script procedures ---------------------------------------------------------------------------------
def script_header(text: str) -> dict:
    """The TOML between ``# --- pyros procedure ---`` and ``# --- end ---`` (comment marks removed)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines[:200]) if SCRIPT_HEADER_START.match(line)), None)
    if start is None:
        raise SchemaError("no header: declare the script between '# --- pyros procedure ---' and '# --- end ---' "
                          "lines (TOML in comments: title, timeout_s, sky, [params.NAME] tables)")
    body = []
    for line in lines[start + 1:]:
        if SCRIPT_HEADER_END.match(line):
            break
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            raise SchemaError(f"header line {line!r} is not a comment (every header line starts with '#')")
        body.append(re.sub(r"^\s*# ?", "", line))
    else:
        raise SchemaError("the header has no '# --- end ---' line")
    try:
        return tomllib.loads("\n".join(body))
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"the header is not valid TOML: {exc}") from exc


def _param_schema(name: str, spec, where: str) -> dict:
    if not _NAME.match(name):
        raise SchemaError(f"{where}: parameter name {name!r} must be letters, digits and _")
    if not isinstance(spec, dict):
        raise SchemaError(f"{where}({name}): must be a table [params.{name}] with at least a type")
    unknown = set(spec) - _PARAM_KEYS
    if unknown:
        raise SchemaError(f"{where}({name}): unknown key(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(_PARAM_KEYS))})")
    kind = spec.get("type")
    if kind not in _PARAM_TYPES:
        raise SchemaError(f"{where}({name}): type must be one of {', '.join(_PARAM_TYPES)}, not {kind!r}")
    prop: dict = {"type": kind, "title": str(spec.get("title") or name.replace("_", " "))}
    if kind == "array":
        items = spec.get("items")
        if items not in ("integer", "number", "string", "boolean"):
            raise SchemaError(f"{where}({name}): an array needs items = \"number\" (or integer, string, boolean)")
        prop["items"] = {"type": items}
    elif "items" in spec:
        raise SchemaError(f"{where}({name}): items is for arrays only")
    if spec.get("help"):
        prop["description"] = str(spec["help"])
    if spec.get("unit"):
        prop["x-unit"] = str(spec["unit"])
    for bound in ("minimum", "maximum"):
        if bound in spec:
            if kind not in ("integer", "number") or isinstance(spec[bound], bool) \
                    or not isinstance(spec[bound], (int, float)):
                raise SchemaError(f"{where}({name}): {bound} needs a number parameter and a number")
            prop[bound] = spec[bound]
    if "enum" in spec:
        if not isinstance(spec["enum"], list) or not spec["enum"]:
            raise SchemaError(f"{where}({name}): enum must be a non-empty list of choices")
        prop["enum"] = spec["enum"]
    if "default" in spec:
        prop["default"] = spec["default"]
        errors = [e.message for e in Draft202012Validator(prop).iter_errors(spec["default"])]
        if errors:
            raise SchemaError(f"{where}({name}): the default {spec['default']!r} is invalid: {errors[0]}")
    return prop


def script_schema(header: dict, *, name: str, title: str) -> dict:
    """The JSON schema of a script's parameters (the same form as a function procedure's)."""
    params = header.get("params", {})
    if not isinstance(params, dict):
        raise SchemaError(f"{name}: params must be tables [params.NAME]")
    properties = {key: _param_schema(key, value, name) for key, value in params.items()}
    required = [key for key, value in params.items() if "default" not in value]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "title": title,
            "description": str(header.get("description", "")).strip(), "properties": properties,
            "required": required, "additionalProperties": False}


def script_module_source(path: Path, *, sha256: str, timeout_s: float, grace_s: float) -> str:
    """The module the worker runs for a script: one procedure function, ``run``."""
    return (f'"""Script procedure {path.name}: generated by the procedures loader at the last reload (edit the '
            'script, not this)."""\n\n'
            "from procedures.external import script_procedure\n\n"
            f"run = script_procedure({str(path)!r}, sha256={sha256!r}, timeout_s={timeout_s!r}, "
            f"grace_s={grace_s!r})\n")


def describe_script(name: str, path: Path) -> ModuleSpec:
    """A script file as a module with one procedure (named after the file), or with the error that stops it."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    spec = ModuleSpec(name=name, path=str(path), sha256=sha, source="")
    proc_name = path.stem
    try:
        if not _NAME.match(proc_name):
            raise SchemaError(f"the file name {path.name!r} must be letters, digits and _ (plus an extension): "
                              "it is the procedure's name")
        if path.suffix != ".py" and not os.access(path, os.X_OK):
            raise SchemaError(f"{path.name} is not executable: chmod +x it (with a #! line), or name it *.py")
        if path.suffix != ".py" and not data.startswith(b"#!"):
            raise SchemaError(f"{path.name} needs a #! first line naming its interpreter (e.g. #!/bin/sh)")
        header = script_header(data.decode("utf-8", errors="replace"))
        unknown = set(header) - _SCRIPT_KEYS
        if unknown:
            raise SchemaError(f"unknown header key(s) {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(sorted(_SCRIPT_KEYS))})")
        title = str(header.get("title") or proc_name.replace("_", " ").capitalize())
        timeout_s, grace_s = header.get("timeout_s", 3600.0), header.get("grace_s", 1.0)
        for key, value in (("timeout_s", timeout_s), ("grace_s", grace_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                    or (key == "timeout_s" and value == 0):
                raise SchemaError(f"{key} must be a positive number of seconds, not {value!r}")
        sky = header.get("sky", "dark")
        if sky not in SKY_CHOICES:
            raise SchemaError(f"sky must be one of {', '.join(SKY_CHOICES)}, not {sky!r}")
        tags = header.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise SchemaError("tags must be a list of strings")
        schema = script_schema(header, name=proc_name, title=title)
        spec.source = script_module_source(path.resolve(), sha256=sha, timeout_s=float(timeout_s),
                                           grace_s=float(grace_s))
        spec.procedures.append(ProcedureSpec(
            name=proc_name, function="run", title=title, description=schema["description"], schema=schema,
            timeout_s=float(timeout_s) + float(grace_s) + SCRIPT_TIMEOUT_MARGIN_S, sky=sky,
            tags=["script", *tags]))
    except SchemaError as exc:
        spec.error = f"SchemaError: {exc}"
    return spec


def describe_directory(directory: str | Path) -> list[ModuleSpec]:
    specs, seen = [], {}
    for name, path in module_files(directory).items():
        spec = describe_script(name, path) if name.startswith(f"{SCRIPTS_DIR}/") else describe_module(name, path)
        duplicates = [p.name for p in spec.procedures if p.name in seen]
        if duplicates:
            spec.error = "; ".join(f"procedure {d!r} is already defined in module {seen[d]!r}" for d in duplicates)
            spec.procedures = []
        for p in spec.procedures:
            seen[p.name] = name
        specs.append(spec)
    return specs


def main(argv: list[str]) -> int:
    """``python -m procedures.loader DIR``: the folder's modules and procedures as JSON on stdout (operator
    code that prints while loading writes to stderr instead)."""
    if len(argv) != 1:
        print("usage: python -m procedures.loader DIR", file=sys.stderr)
        return 2
    out, sys.stdout = sys.stdout, sys.stderr
    try:
        specs = describe_directory(argv[0])
    finally:
        sys.stdout = out
    out.write(json.dumps([asdict(s) for s in specs]))
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
