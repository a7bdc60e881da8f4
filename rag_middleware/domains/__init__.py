"""Domains: ``knowledge_base/<name>/`` as data, and what the core does with it.

- ``loader``: reads and checks a domain folder (errors name file and line); ``registry``: the loaded ones;
- ``glosses``: what descriptions and rules say each voted label means; ``word_shapes``: what word values look like;
- ``spec``: the declarative sections of domain.yaml (context, ground, units, derive, vote, harden);
- ``grounding``: facts taken from the request (contexts, numbers, units, words, pattern matches);
- ``mechanisms``: the grammar narrowed per request, the answer hardened and its derived fields filled;
- ``votes``: neighbours vote on a field's value; ``narrowing``: a schema node cut down to allowed values;
- ``anchors``: one list item per number the request states; ``slots``: which mention fills which field;
- ``annotations``: ``x-ground`` in the schema read like a ``ground:`` entry; ``named_values``: the word beside a
  word value names its kind ("host pay-01"); ``used_values``: values the examples always give a list item;
- ``paths``: ``/a/*/b`` paths into answers and schemas;
- ``clauses``: per-clause labels (a list's item types voted clause by clause, steering the grammar);
- ``validation``: JSON extraction and the check of an answer against the domain's model;
- ``infer``, ``overrides``: mechanisms inferred from examples, versioned overrides;
- ``scaffolding``, ``authoring``: ``domains new`` and ``domains check``, for domain authors.

May import: the ground floor (errors, config, records, options), memory (embedding) and templating (variants).
Never the request path, a server or an LLM backend.
"""

from .loader import CuratedExample, CuratedNegative, Domain, DomainSpec, load_domain
from .registry import DomainRegistry

__all__ = ["CuratedExample", "CuratedNegative", "Domain", "DomainRegistry", "DomainSpec", "load_domain"]
