"""mesh.yaml's JSON Schema, generated from the field table (fields.py), so that it cannot drift
from what the parser accepts. `meshctl schema` prints it; the package ships it as
mesh.schema.json (tests/unit/test_schema.py checks that file is what this generates)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from .fields import SECTIONS, VARIABLE, Schema, Section
from .interpolate import Interpolated

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "mesh.schema.json"


@functools.lru_cache(maxsize=1)
def _schema() -> Schema:
    return mesh_yaml_schema()


def mesh_yaml_schema() -> Schema:
    """The whole schema: the project section at the root, every other section a definition."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "meshctl mesh.yaml",
        **_section(SECTIONS["project"]),
        "definitions": {name: _section(section) for name, section in SECTIONS.items() if name != "project"},
    }


def schema_text() -> str:
    return json.dumps(mesh_yaml_schema(), indent=2, ensure_ascii=False) + "\n"


def _section(section: Section) -> Schema:
    out: dict[str, Any] = {
        "type": "object", "description": section.help,
        "properties": {f.name: _described(f.type, f.help) for f in section.fields},
        "additionalProperties": section.others if section.others is not None else False,
    }
    if section.key_pattern:
        out["propertyNames"] = {"pattern": section.key_pattern}
    if section.required:
        out["required"] = list(section.required)
    if section.exactly_one:
        out["oneOf"] = [{"required": [key]} for key in section.exactly_one]
    return out


def _described(schema: Schema, help_text: str) -> Schema:
    # Beside a $ref, draft-07 ignores other keywords: the reference goes inside allOf.
    if "$ref" in schema:
        return {"allOf": [schema], "description": help_text}
    return {**schema, "description": help_text}


def typed_by_schema(data: Any, schema: Schema | None = None, root: Schema | None = None) -> Any:
    """`data` with each value a variable gave (interpolate.Interpolated) read as the number or
    boolean the schema expects there (`port: ${PORT:-8080}` → 8080), as compose casts by its
    schema; text that spells none stays text, for the parser to refuse with file:line."""
    root = root or _schema()
    schema = _resolved(schema or root, root)
    if isinstance(data, Interpolated):
        return _cast(data, _scalar_types(schema, root))
    if isinstance(data, dict):
        return {key: typed_by_schema(value, _child(schema, root, str(key)), root) if _child(schema, root, str(key))
                else value for key, value in data.items()}
    if isinstance(data, list):
        items = _first(schema, root, "items")
        return [typed_by_schema(item, items, root) if items else item for item in data]
    return data


def _resolved(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _alternatives(schema: Schema, root: Schema) -> list[Schema]:
    schema = _resolved(schema, root)
    nested = schema.get("anyOf", []) + schema.get("allOf", [])
    return [schema] + [alt for option in nested for alt in _alternatives(option, root)]


def _first(schema: Schema, root: Schema, keyword: str) -> Schema | None:
    return next((alt[keyword] for alt in _alternatives(schema, root) if isinstance(alt.get(keyword), dict)), None)


def _child(schema: Schema, root: Schema, key: str) -> Schema | None:
    for alt in _alternatives(schema, root):
        if key in alt.get("properties", {}):
            return alt["properties"][key]
    return _first(schema, root, "additionalProperties")


def _scalar_types(schema: Schema, root: Schema) -> set[str]:
    kinds: set[str] = set()
    for alt in _alternatives(schema, root):
        if alt == VARIABLE:          # where a number is wanted, a ${VAR} may stand: not a wish for text
            continue
        kind = alt.get("type")
        kinds |= set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()
        kinds |= {type(v).__name__ for v in alt.get("enum", []) + ([alt["const"]] if "const" in alt else [])}
    return kinds


def _cast(value: Interpolated, kinds: set[str]) -> Any:
    text = value.strip()
    if kinds & {"string", "str"} or not kinds:
        return value
    if kinds & {"integer", "int", "number"} and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if "number" in kinds and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", text):
        return float(text)
    if kinds & {"boolean", "bool"} and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return value
