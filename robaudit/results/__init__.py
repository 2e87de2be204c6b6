"""The results stage: ``results.json`` (versioned, with a JSON Schema) and the per-sample table."""
from importlib.resources import files


def schema_text() -> str:
    """The JSON Schema of ``results.json`` (draft 2020-12), as shipped in the package."""
    return (files("robaudit.results") / "schema.json").read_text(encoding="utf-8")


def zoo_schema() -> dict:
    """The JSON Schema of ``zoo.json`` (``robaudit zoo``)."""
    import json

    return json.loads((files("robaudit.results") / "zoo_schema.json").read_text(encoding="utf-8"))
