"""A/B tests of prompt template sets: variants declared per domain, sticky assignment, and the comparison.

A domain declares its variants in ``domain.yaml``::

    variants:
      - name: control          # the project's prompts/ (no ``prompts`` key)
        weight: 50
      - name: terse
        weight: 50
        prompts: prompts_terse  # a complete template directory, relative to the domain directory

Assignment is sticky: a hash of domain, tenant and user (or session) picks the variant in proportion to the
weights, so one user always sees one variant. Without a user the tenant alone decides. Every interaction
records its variant; :func:`ab_report` compares the variants on valid rate, approval rate and mean attempts
with Wilson 95% intervals and a two-proportion z-test against the first variant.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from .errors import DomainError, RequestError

__all__ = ["MIN_PER_VARIANT", "VariantSpec", "ab_report", "assign", "check_variants", "pick", "two_proportion_p",
           "wilson"]

MIN_PER_VARIANT = 30  # requests per variant before a comparison means anything
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
    from .templates import TemplateSet

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


# -- statistics -----------------------------------------------------------------------------------------

def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score 95% interval for a proportion; None without trials."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(s1: int, n1: int, s2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test; None when it is undefined."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None if s1 / n1 == s2 / n2 else 0.0
    z = (s1 / n1 - s2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))


def _enough(s: int, n: int) -> bool:
    """Normal approximation holds: enough trials, and at least 5 successes and 5 failures."""
    return n >= MIN_PER_VARIANT and s >= 5 and n - s >= 5


def ab_report(rows: Sequence[Any], *, domain: str, declared: Sequence[VariantSpec] = ()) -> dict[str, Any]:
    """Compare variants. ``rows`` are stats rows (variant, valid, attempts, feedback) of one domain."""
    names = [v.name for v in declared]
    for row in rows:
        if row.variant and row.variant not in names:
            names.append(row.variant)
    variants: list[dict[str, Any]] = []
    for name in names:
        mine = [r for r in rows if r.variant == name]
        n = len(mine)
        valid = sum(1 for r in mine if r.valid)
        reviewed = [r for r in mine if r.feedback]
        approved = sum(1 for r in reviewed if r.feedback in ("approve", "edit"))
        variants.append({
            "variant": name, "requests": n, "valid": valid, "valid_rate": valid / n if n else None,
            "valid_ci95": wilson(valid, n), "reviewed": len(reviewed), "approved": approved,
            "approval_rate": approved / len(reviewed) if reviewed else None,
            "approval_ci95": wilson(approved, len(reviewed)),
            "mean_attempts": round(sum(r.attempts for r in mine) / n, 3) if n else None,
        })
    comparisons: list[dict[str, Any]] = []
    notes: list[str] = []
    if len(variants) < 2:
        notes.append(f"domain {domain!r} has fewer than two variants with data; nothing to compare")
    base = variants[0] if variants else None
    for other in variants[1:]:
        for metric, s_key, n_key in (("valid_rate", "valid", "requests"), ("approval_rate", "approved", "reviewed")):
            s1, n1, s2, n2 = base[s_key], base[n_key], other[s_key], other[n_key]
            enough = _enough(s1, n1) and _enough(s2, n2)
            comparisons.append({
                "metric": metric, "a": base["variant"], "b": other["variant"],
                "difference": (s2 / n2 - s1 / n1) if n1 and n2 else None,
                "p_value": two_proportion_p(s1, n1, s2, n2), "enough_data": enough,
            })
            if not enough:
                notes.append(f"not enough data yet for {metric} ({base['variant']} vs {other['variant']}): the "
                             f"z-test needs at least {MIN_PER_VARIANT} {n_key} per variant with 5 successes and "
                             f"5 failures each (have {s1}/{n1} and {s2}/{n2})")
    return {"domain": domain, "variants": variants, "comparisons": comparisons, "notes": notes,
            "enough_data": bool(comparisons) and all(c["enough_data"] for c in comparisons)}
