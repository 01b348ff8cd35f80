"""mesh.yaml's JSON Schema, generated from the field table (fields.py), so that it cannot drift
from what the parser accepts. `meshctl schema` prints it; the package ships it as
mesh.schema.json (tests/unit/test_schema.py checks that file is what this generates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .fields import SECTIONS, Schema, Section

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "mesh.schema.json"


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
