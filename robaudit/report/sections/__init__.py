"""Per-section context builders: ``<section id>.py`` with ``build(results: dict) -> dict``.

Each builder turns ``results.json`` (and nothing else, so ``robaudit report`` can redraw
without recomputing) into what ``reports/templates/sections/<section id>.html.j2`` shows.
"""
