"""Domains: ``knowledge_base/<name>/`` as data, and what the core does with it.

- ``loader``: reads and checks a domain folder (errors name file and line);
- ``spec``: the declarative sections of domain.yaml (context, ground, units, derive, vote, harden);
- ``grounding``: facts taken from the request (contexts, numbers, units, words, pattern matches);
- ``mechanisms``: the grammar narrowed per request, the answer hardened and its derived fields filled;
- ``votes``: neighbours vote on a field's value;
- ``paths``: ``/a/*/b`` paths into answers and schemas.

May import: errors, validation, guide, abtest, config. Never the pipeline, assembly or a backend.
"""

from .loader import CuratedExample, CuratedNegative, Domain, DomainRegistry, DomainSpec, load_domain

__all__ = ["CuratedExample", "CuratedNegative", "Domain", "DomainRegistry", "DomainSpec", "load_domain"]
