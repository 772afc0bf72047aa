"""Procedure modules from the procedures folder (no Django): scan, compare, load, describe.

ODIN's sequencer loads modules from a folder and offers *Detect changes* and *Reload*; so does PyROS.
A module is loaded from its source text into a fresh module object (never imported by name, so two
versions never mix); an import or syntax error is kept with its traceback and breaks no other module.
The web process never executes operator code: ``describe_directory`` runs in a short-lived subprocess
(``python -m procedures.loader DIR``) and returns plain JSON; the worker runs the source stored at the
last reload, so what was validated is what runs."""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import traceback
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

from procedures.schema import SchemaError, procedure_schema

MODULE_PREFIX = "pyros_procedures"


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
    """``{module name: path}`` of the ``*.py`` files of the folder (not ``_private.py``), sorted."""
    folder = Path(directory)
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.py")) if not p.name.startswith(("_", "."))}


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


def describe_directory(directory: str | Path) -> list[ModuleSpec]:
    specs, seen = [], {}
    for name, path in module_files(directory).items():
        spec = describe_module(name, path)
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
