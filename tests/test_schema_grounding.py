"""Grounding asked for by the output schema itself (``x-ground``), contexts that leave out other contexts
(``without``), and a clause splitter declared as regexes (``split: {breaks, drop, lead}``)."""

from __future__ import annotations

import json

import pytest
import yaml
from jsonschema import Draft202012Validator

from rag_middleware.domains.clauses import regex_split
from rag_middleware.domains.grounding import build_context, request_body
from rag_middleware.domains.registry import DomainRegistry
from rag_middleware.domains.mechanisms import Declarative
from rag_middleware.domains.spec import DeclarativeSpec, SplitSpec
from rag_middleware.errors import DomainError
from rag_middleware.request.ask import Switches

CONTEXT = {"columns": {"line": r"^Columns:\s*(.*)$", "split": ","},
           "named": {"from": "columns", "mentioned": True},
           "grouped": {"from": "columns", "cues": [r"\bper\s+{value}"]},
           "others": {"from": "columns", "without": ["grouped"]}}

SCHEMA = {
    "type": "object",
    "properties": {
        "key": {"type": "string", "x-ground": ["named", "columns"]},
        "maybe": {"type": ["string", "null"], "x-ground": "named"},
        "keep": {"type": "array", "items": {"type": "string"}, "minItems": 1, "x-ground": ["named", "columns"]},
        "agg": {"type": "object", "additionalProperties": {"enum": ["sum", "mean"]}, "minProperties": 1,
                "x-ground": ["others", "columns"]},
        "n": {"type": "integer", "x-ground": "numbers"},
    },
    "required": ["key", "keep", "agg", "n"],
    "additionalProperties": False,
}


def declarative(schema=SCHEMA, context=CONTEXT):
    spec = DeclarativeSpec.from_sections(context=context, ground={}, units={}, derive={}, vote={}, harden=[])
    return Declarative(spec, schema)


def grammar(request, **switches):
    schema, notes = declarative().grammar(SCHEMA, request, flags=Switches(**switches))
    return schema, notes


def test_an_annotated_string_admits_the_first_source_with_values():
    schema, notes = grammar("Columns: region, sales, city\nShow sales per region, top 3")
    assert schema["properties"]["key"] == {"enum": ["region", "sales"]}  # named, not every column
    assert schema["properties"]["n"] == {"enum": [3]}  # a built-in source works as well
    schema, _ = grammar("Columns: region, sales\nDo it")  # names none: falls back to every column
    assert schema["properties"]["key"] == {"enum": ["region", "sales"]}
    assert any("x-ground named: values grounded" in n for n in notes)


def test_a_nullable_annotated_string_keeps_null_and_an_empty_source_admits_only_null():
    schema, _ = grammar("Columns: region, sales\nShow sales")
    assert schema["properties"]["maybe"] == {"enum": ["sales", None]}
    schema, notes = grammar("Columns: region, sales\nDo it")  # named is empty and nothing follows it
    assert schema["properties"]["maybe"] == {"enum": [None]}  # as a ground: entry that finds nothing
    assert "x-ground /maybe: nothing in the request to ground it; null" in notes


def test_an_annotated_list_grounds_its_items_and_holds_each_value_once():
    schema, _ = grammar("Columns: a, b, c\nDrop b and c")
    keep = schema["properties"]["keep"]
    assert keep["items"] == {"enum": ["b", "c"]} and keep["maxItems"] == 2
    v = Draft202012Validator(keep)
    assert v.is_valid(["b", "c"]) and not v.is_valid(["b", "b", "b"]) and not v.is_valid(["a"])


def test_an_annotated_map_takes_its_keys_from_the_source():
    schema, _ = grammar("Columns: region, sales, cost\nTotal per region")
    agg = schema["properties"]["agg"]
    assert set(agg["properties"]) == {"sales", "cost"}  # every column but the group
    assert agg["additionalProperties"] is False
    v = Draft202012Validator(agg)
    assert v.is_valid({"sales": "sum"}) and not v.is_valid({"region": "sum"}) and not v.is_valid({"sales": "max"})


def test_the_annotation_never_reaches_the_decoder_or_the_prompt():
    grounded, _ = grammar("Columns: a, b\nSort by a")
    loose, _ = grammar("Columns: a, b\nSort by a", ground=False)
    assert "x-ground" not in json.dumps(grounded) + json.dumps(loose)
    assert loose["properties"]["key"] == {"type": "string"}  # grounding off: the field stays open
    shown = declarative().display_schema(SCHEMA)
    assert "x-ground" not in json.dumps(shown) and "x-ground" in json.dumps(SCHEMA)  # the original is untouched


def test_without_leaves_out_the_values_of_other_contexts():
    spec = DeclarativeSpec.from_sections(context=CONTEXT, ground={}, units={}, derive={}, vote={}, harden=[])
    ctx = build_context("Columns: region, sales, cost\nTotal per region", spec.context)
    assert ctx["grouped"] == ["region"] and ctx["others"] == ["sales", "cost"]
    with pytest.raises(ValueError, match="'nope' names no context declared before it"):
        DeclarativeSpec.from_sections(context={**CONTEXT, "bad": {"from": "columns", "without": ["nope"]}},
                                      ground={}, units={}, derive={}, vote={}, harden=[])


def write_domain(root, schema, *, context=None, vote=None):
    d = root / "demo"
    d.mkdir(parents=True)
    (d / "output.schema.json").write_text(json.dumps(schema))
    spec = {"description": "demo", "output_schema": "output.schema.json", "context": context or {}}
    if vote:
        spec["vote"] = vote
    (d / "domain.yaml").write_text(yaml.safe_dump(spec))
    (d / "examples.jsonl").write_text("")
    return DomainRegistry(root)


def test_an_annotation_naming_no_declared_context_is_a_load_error(tmp_path):
    schema = {"type": "object", "properties": {"key": {"type": "string", "x-ground": "colums"}}}
    registry = write_domain(tmp_path, schema, context={"columns": {"line": "^Columns:(.*)$", "split": ","}})
    with pytest.raises(DomainError, match="grounds in colums: declare it under context"):
        registry.get("demo")


SPLIT = SplitSpec(breaks=r"\s*(?:;|\.\s+|,?\s+then\s+)", drop=r",?\s*as a (?:bar|line) chart\b",
                  lead=r"(?:where|if)\b")


def test_a_declared_splitter_breaks_drops_and_joins_a_leading_condition():
    split = regex_split(SPLIT, lambda r: request_body(r, None))
    assert split("Remove duplicates, then total b per a as a bar chart.") == ["Remove duplicates", "total b per a"]
    assert split("where b is blank; put 0, then sort by a") == ["where b is blank, put 0", "sort by a"]
    assert split("Sort by a, i.e. ascending") == ["Sort by a, i.e ascending"]  # an abbreviation is no sentence end


def test_a_declared_splitter_is_used_with_the_hooks_off_too(tmp_path):
    schema = {"type": "object", "properties": {"steps": {"type": "array", "items": {
        "type": "object", "properties": {"type": {"enum": ["sort", "dedupe"]}}}}}}
    vote = {"/steps/*/type": {"per_clause": True, "split": {"breaks": r"\s*;\s*", "drop": r"\bplease\b"}}}
    domain = write_domain(tmp_path, schema, context={"columns": {"line": "^Columns:(.*)$", "split": ","}},
                          vote=vote).get("demo")
    assert domain.split("Columns: a\nsort by a please; dedupe rows") == ["sort by a", "dedupe rows"]
    split, _, _ = domain.plain_steps
    assert split("Columns: a\nsort by a please; dedupe rows") == ["sort by a", "dedupe rows"]
    with pytest.raises(ValueError, match="not a valid regex"):
        SplitSpec(breaks="(")


def test_grounded_values_the_fields_own_pattern_rejects_are_not_admitted():
    """Values from words or a declared context that the field's pattern would fail are left out: a grammar that
    admitted them would only make answers that fail validation."""
    from rag_middleware.domains.grounding import candidates

    request = "Hello, my order ORD-481203 has not arrived, and ORD-12 neither"
    words = candidates("words", request=request, body=request, context={}, units=None, pattern=r"^ORD-\d{6}$",
                       only_mentioned=False)
    assert words == ["ORD-481203"]
    context = {"paths": ["/api/v2/orders", "orders"]}
    assert candidates("paths", request=request, body=request, context=context, units=None, pattern="^/",
                      only_mentioned=False) == ["/api/v2/orders"]
    assert candidates("paths", request=request, body=request, context=context, units=None, pattern=None,
                      only_mentioned=False) == ["/api/v2/orders", "orders"]  # no pattern: all of them
    assert candidates("paths", request=request, body=request, context=context, units=None, pattern="([",
                      only_mentioned=False) == ["/api/v2/orders", "orders"]  # a pattern re cannot read: all


def test_a_sentences_full_stop_after_a_patterned_value_is_not_the_values():
    from rag_middleware.domains.grounding import pattern_matches

    path = "^/[A-Za-z0-9_./{}-]*$"
    assert pattern_matches(path, "502s on /login.\nCould you") == ["/login"]
    assert pattern_matches(path, "size of /static/app.js and /a/b. Thanks") == ["/static/app.js", "/a/b"]
    assert pattern_matches(r"^ORD-\d{6}$", "order ORD-123456.") == ["ORD-123456"]
