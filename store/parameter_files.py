"""Parameter files of a study: reading OVERRIDES and PRESET back, merging overrides, writing parameter copies.

A parameter copy is the text of ``parameters.py`` unchanged plus an appended, readable block that reassigns
``OVERRIDES`` (applied by ``build_parameters`` on top of the defaults and the preset) and a ``PRESET`` line
(binding decision 4: the repository's parameters.py is never edited). The copy is validated by loading it.
Files are parsed here, never executed.

:func:`read_preset` is the one reader of the preset a parameters file records (parameters.check_preset
validates a name; parameters.load_parameters_file builds the parameters of a file, its preset included).

This module imports only the standard library and parameters.py.
"""

from __future__ import annotations

import ast
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import parameters
from parameters import DEFAULT_PRESET, ParameterError, check_preset, load_parameters_file
from store.files import atomic_write_text

REPO_PARAMETERS = Path(parameters.__file__).resolve()
"""The repository's parameters.py, the source of every copy."""
OVERRIDES_HEADER = (
    "\n\n# " + "-" * 116 + "\n"
    "# Written by main.py: the changes of this copy, applied on top of the defaults above and the values of the\n"
    "# preset named by PRESET (binding decision 4).\n"
)  # fmt: skip


def read_overrides(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The value of the last top-level ``OVERRIDES`` assignment of a parameters file ({} if none).

    The file is parsed, not executed; ParameterError if it does not parse or the value is not a literal.
    """
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as error:
        raise ParameterError(f"{path}: cannot be read: {error}") from error
    values = [node.value for node in tree.body if _assigns_overrides(node)]
    if not values:
        return {}
    try:
        overrides = ast.literal_eval(values[-1])
    except ValueError as error:
        raise ParameterError(f"{path}: OVERRIDES must be a literal dictionary: {error}") from error
    check_overrides_shape(overrides, str(path))
    return overrides


def read_preset(path: str | os.PathLike, default: str | None = DEFAULT_PRESET) -> str | None:
    """The preset a parameters file records (its last top-level ``PRESET = "..."``; ``default`` if none).

    The file is parsed, not executed; ParameterError if it does not parse or names no known preset.
    """
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as error:
        raise ParameterError(f"{path}: cannot be read: {error}") from error
    values = [node.value for node in tree.body if _assigns_overrides(node, "PRESET")]
    if not values:
        return default
    value = values[-1].value if isinstance(values[-1], ast.Constant) else None
    if not isinstance(value, str):
        raise ParameterError(f"{path}: PRESET must be a string literal")
    return check_preset(value)


def _assigns_overrides(node: ast.stmt, name: str = "OVERRIDES") -> bool:
    """Whether a top-level statement assigns a value to ``name`` (OVERRIDES by default)."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets = [node.target]
    else:
        return False
    return any(isinstance(t, ast.Name) and t.id == name for t in targets)


def check_overrides_shape(overrides: Any, origin: str) -> None:
    """Check that overrides are ``{"ClassName": {"field": value}}`` (ParameterError otherwise)."""
    if not isinstance(overrides, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) and all(isinstance(f, str) for f in v) for k, v in overrides.items()
    ):
        raise ParameterError(f'{origin}: overrides must look like {{"ClassName": {{"field": value}}}}')


# ------------------------------------------------------------------------------------------------ overrides
def merge_overrides(base: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Mapping[str, Any]]) -> dict:
    """A new ``{"ClassName": {field: value}}`` dictionary: ``base`` with ``extra``'s fields winning."""
    merged = {name: dict(fields) for name, fields in base.items()}
    for name, fields in extra.items():
        merged.setdefault(name, {}).update(fields)
    return merged


def conflicting_overrides(base: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``Class.field`` names that both set, with different values (``extra`` wins in merge_overrides)."""
    return [f"{name}.{key}" for name, fields in extra.items() for key, value in fields.items()
            if key in base.get(name, {}) and _plain(base[name][key]) != _plain(value)]  # fmt: skip


def _plain(value: Any) -> Any:
    """Lists as tuples, recursively (for comparisons)."""
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def format_value(value: Any, indent: int = 0) -> str:
    """A Python literal for a bool, int, float, string, list or tuple (long sequences wrapped)."""
    if isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"override values must be finite, got {value}")
        return repr(float(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid Python string literal, in double quotes
    if isinstance(value, list | tuple):
        return _format_sequence(value, indent)
    raise TypeError(f"override values must be bool, int, float, str, list or tuple, got {type(value).__name__}")


def _format_sequence(value: list | tuple, indent: int, width: int = 100) -> str:
    """A list or tuple on one line if it fits, else its items wrapped on indented lines."""
    items = [format_value(v, indent + 4) for v in value]
    open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
    one_line = ", ".join(items) + ("," if isinstance(value, tuple) and len(items) == 1 else "")
    if indent + len(one_line) + 2 <= width and "\n" not in one_line:
        return f"{open_}{one_line}{close}"
    pad = " " * (indent + 4)
    lines, current = [], ""
    for item in items:
        if current and ("\n" in item or len(pad) + len(current) + len(item) + 2 > width):
            lines.append(current)
            current = ""
        current += f"{item}, " if "\n" not in item else f"{item},"
    lines.append(current)
    body = "".join(f"{pad}{line.rstrip()}\n" for line in lines if line)
    return f"{open_}\n{body}{' ' * indent}{close}"


def format_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> str:
    """``OVERRIDES = {...}`` as readable Python source, one class and one field per line."""
    lines = ["OVERRIDES = {"]
    for class_name, fields in overrides.items():
        if not isinstance(class_name, str) or not isinstance(fields, Mapping):
            raise TypeError(f"overrides must map class names to {{field: value}} dictionaries, got {class_name!r}")
        lines.append(f"    {json.dumps(class_name)}: {{")
        for key, value in fields.items():
            if not isinstance(key, str):
                raise TypeError(f"{class_name}: field names must be strings, got {key!r}")
            try:
                lines.append(f"        {json.dumps(key)}: {format_value(value, 8)},")
            except (TypeError, ValueError) as error:
                raise type(error)(f"{class_name}.{key}: {error}") from error
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_parameters_copy(
    path: str | os.PathLike,
    overrides: Mapping[str, Mapping[str, Any]],
    source: str | os.PathLike | None = None,
    title: str = "",
    preset: str = DEFAULT_PRESET,
) -> None:
    """Write ``source``'s text (default: the repository's parameters.py) plus an appended ``OVERRIDES`` block
    and ``PRESET`` line to ``path``; check it loads.

    Raises ParameterError (and leaves no file) if the copy does not load or does not carry ``overrides``.
    """
    path, source = Path(path), Path(source or REPO_PARAMETERS)
    comment = f"# {title}\n" if title else ""
    text = source.read_text(encoding="utf-8").rstrip("\n") + OVERRIDES_HEADER + comment
    _write_checked(path, text + _overrides_block(path, overrides, preset))


def _overrides_block(path: Path, overrides: Mapping[str, Mapping[str, Any]], preset: str) -> str:
    """The ``OVERRIDES`` block and ``PRESET`` line of a copy, checked to give back the overrides."""
    block = format_overrides(overrides)
    if ast.literal_eval(block.split("=", 1)[1].strip()) != {k: dict(v) for k, v in overrides.items()}:
        raise ValueError(f"internal error: the OVERRIDES block for {path} does not reproduce the overrides")
    return block + f"PRESET = {json.dumps(check_preset(preset))}\n"


def _write_checked(path: Path, text: str) -> None:
    """Write a parameters copy whose text loads; ParameterError otherwise, leaving an existing copy as it was
    (the text is loaded from a scratch file first) and no new one."""
    with tempfile.TemporaryDirectory() as scratch:  # not in the study folder: a kill leaves nothing there
        trial = Path(scratch) / path.name
        trial.write_text(text, encoding="utf-8")
        try:
            load_parameters_file(trial)
        except ParameterError as error:
            raise ParameterError(f"invalid parameters in {path.name}: {error.__cause__ or error}") from error
    atomic_write_text(path, text)


def set_num_runs(path: str | os.PathLike, runs: int) -> None:
    """Record ``TrainingPars.num_runs = runs`` in a parameters copy written by write_parameters_copy (a grown
    study). Only that value changes: the text above the block, the title, the other overrides in their order
    and the preset stay, so the copy equals the one a study started with ``runs`` runs writes."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    head, header, tail = text.rpartition(OVERRIDES_HEADER)
    if not header or "OVERRIDES = {" not in tail:
        raise ParameterError(f"{path}: no OVERRIDES block written by main.py")
    overrides = read_overrides(path)
    overrides.setdefault("TrainingPars", {})["num_runs"] = int(runs)
    comment = tail[: tail.index("OVERRIDES = {")]
    _write_checked(path, head + header + comment + _overrides_block(path, overrides, read_preset(path)))
