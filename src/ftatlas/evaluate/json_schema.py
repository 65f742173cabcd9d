"""``json_schema``: the prediction's first JSON value validates against the schema in ``eval.json_schema``
(a file path or an inline mapping; any draft the ``jsonschema`` library knows, picked by ``$schema``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftatlas.data.errors import DataError
from ftatlas.evaluate.metrics import first_json
from ftatlas.evaluate.model_metrics import EvalBatch, MetricResult, register
from ftatlas.extras import require


def load_schema(source: str | dict[str, Any]) -> Any:
    """A validator for ``source``; a missing file, bad JSON or an invalid schema is a DataError naming it."""
    jsonschema = require("jsonschema", "metrics", "metric json_schema")
    where = "eval.json_schema (inline)"
    if isinstance(source, str):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise DataError(path, None, "eval.json_schema", "schema file does not exist")
        try:
            source = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, None, f"invalid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(source, dict):
        raise DataError(where, None, "eval.json_schema", f"a schema is a JSON object, got {type(source).__name__}")
    cls = jsonschema.validators.validator_for(source)
    try:
        cls.check_schema(source)
    except jsonschema.exceptions.SchemaError as e:
        field = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise DataError(where, None, field, f"invalid JSON schema: {e.message}") from None
    return cls(source)


def _check(spec: Any) -> None:
    load_schema(spec.json_schema)


@register("json_schema", needs="json_schema", check=_check)
def json_schema(batch: EvalBatch) -> MetricResult:
    """1 when the first JSON object/array in the prediction is valid under the schema, else 0."""
    validator = load_schema(batch.spec.json_schema)
    per: list[float | None] = []
    notes = []
    for pred in batch.predictions or []:
        value = first_json(pred)
        if value is None:
            per.append(0.0)
            notes.append({"json_schema_error": "no JSON value in the prediction"})
            continue
        error = next(iter(validator.iter_errors(value)), None)
        per.append(float(error is None))
        where = "/".join(str(p) for p in error.absolute_path) if error is not None else ""
        notes.append({"json_schema_error": f"{where or '(root)'}: {error.message}"} if error is not None else {})
    return MetricResult(per, notes=notes)
