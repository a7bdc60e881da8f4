"""A/B variants of prompt template sets: declared per domain, checked at load, assigned stickily.

A domain declares its variants in ``domain.yaml``::

    variants:
      - name: control          # the project's prompts/ (no ``prompts`` key)
        weight: 50
      - name: terse
        weight: 50
        prompts: prompts_terse  # a complete template directory, relative to the domain directory

Assignment is sticky: a hash of domain, tenant and user (or session) picks the variant in proportion to the
weights, so one user always sees one variant. Without a user the tenant alone decides. Every interaction
records its variant; ``analytics.ab`` compares them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ..errors import DomainError, RequestError

__all__ = ["VariantSpec", "assign", "check_variants", "pick"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


class VariantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=40)
    weight: float = Field(1.0, gt=0)
    prompts: str | None = None  # template directory relative to the domain directory; None = the default set


def _item_lines(text: str) -> list[int]:
    """Line of each item under the top-level ``variants:`` key of a domain.yaml."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "variants" and isinstance(value, yaml.SequenceNode):
                return [item.start_mark.line + 1 for item in value.value]
    return []


def check_variants(variants: Sequence[VariantSpec], *, domain_dir: Path, spec_path: Path, text: str) -> None:
    """Unique, well-formed names and complete template directories; errors name domain.yaml and the line."""
    from ..templating.engine import TemplateSet

    lines = _item_lines(text)
    seen: set[str] = set()
    for i, variant in enumerate(variants):
        line = lines[i] if i < len(lines) else None
        if not _NAME.match(variant.name):
            raise DomainError(f"variants[{i}].name {variant.name!r} must match [A-Za-z0-9_.-]{{1,40}}",
                              path=str(spec_path), line=line)
        if variant.name in seen:
            raise DomainError(f"variants[{i}]: duplicate variant name {variant.name!r}", path=str(spec_path), line=line)
        seen.add(variant.name)
        if variant.prompts is None:
            continue
        root = (domain_dir / variant.prompts).resolve()
        if not root.is_dir():
            raise DomainError(f"variants[{i}] ({variant.name}): prompts directory {variant.prompts} not found",
                              path=str(spec_path), line=line)
        problems = TemplateSet(root).check(domain_dir.name)
        if problems:
            raise DomainError(f"variants[{i}] ({variant.name}): {problems[0]}", path=str(spec_path), line=line)


def pick(variants: Sequence[VariantSpec], *, domain: str, tenant: str, key: str | None) -> VariantSpec:
    """The variant for (domain, tenant, key): a uniform hash point placed on the cumulative weights."""
    digest = hashlib.sha256(f"{domain}\0{tenant}\0{key or ''}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in variants)
    acc = 0.0
    for variant in variants:
        acc += variant.weight
        if point < acc:
            return variant
    return variants[-1]


def assign(variants: Sequence[VariantSpec], *, domain: str, tenant: str, key: str | None,
           forced: str | None = None) -> VariantSpec | None:
    """The sticky variant, or the one named by ``forced``; None when the domain has no variants."""
    if forced:
        for variant in variants:
            if variant.name == forced:
                return variant
        raise RequestError(f"domain {domain!r} has no variant {forced!r}; variants: "
                           f"{', '.join(v.name for v in variants) or '(none)'}")
    return pick(variants, domain=domain, tenant=tenant, key=key) if variants else None
