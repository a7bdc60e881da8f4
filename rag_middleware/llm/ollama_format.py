"""The grammar schema as Ollama's ``format`` can read it.

Ollama turns ``format`` into a grammar with llama.cpp's JSON-schema converter, which reads a list's
``prefixItems`` only as a whole tuple: with ``items`` beside them (even ``items: false``) it reads ``items``
alone. The embedded backend (llguidance) reads both, and the grammar puts a request's sure list items in
``prefixItems`` (domains/sure_items.py) and per-clause positions in a closed tuple. So that no value is lost
upstream, a list with both becomes, for Ollama, one list whose items are any of its positions' shapes or its
other items' shape (the length bounds kept), and a closed tuple loses its ``items: false``. Validation after
generation is unchanged: an answer Ollama writes in another order is checked against the domain's schema.
"""

from __future__ import annotations

from typing import Any

__all__ = ["for_ollama"]


def for_ollama(schema: Any) -> Any:
    """A copy of ``schema`` whose lists llama.cpp's converter reads whole (see above)."""
    if isinstance(schema, list):
        return [for_ollama(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: for_ollama(value) for key, value in schema.items()}
    prefix = out.get("prefixItems")
    if isinstance(prefix, list) and "items" in out:
        rest = out.pop("items")
        if isinstance(rest, dict):
            out.pop("prefixItems")
            out["items"] = {"anyOf": [*prefix, rest]}
    return out
