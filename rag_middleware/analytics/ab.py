"""A/B statistics: variants (``templating.variants``) compared on valid rate, approval rate and mean attempts,
with Wilson 95% intervals and a two-proportion z-test against the first variant."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..templating.variants import VariantSpec

__all__ = ["MIN_PER_VARIANT", "ab_report", "two_proportion_p", "wilson"]

MIN_PER_VARIANT = 30  # requests per variant before a comparison means anything


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
    variants = [_variant_stats(name, [r for r in rows if r.variant == name]) for name in _names(rows, declared)]
    comparisons: list[dict[str, Any]] = []
    notes: list[str] = []
    if len(variants) < 2:
        notes.append(f"domain {domain!r} has fewer than two variants with data; nothing to compare")
    for other in variants[1:]:
        _compare(variants[0], other, comparisons, notes)
    return {"domain": domain, "variants": variants, "comparisons": comparisons, "notes": notes,
            "enough_data": bool(comparisons) and all(c["enough_data"] for c in comparisons)}


def _names(rows: Sequence[Any], declared: Sequence[VariantSpec]) -> list[str]:
    """The declared variants in order, then any others the rows name."""
    names = [v.name for v in declared]
    for row in rows:
        if row.variant and row.variant not in names:
            names.append(row.variant)
    return names


def _variant_stats(name: str, mine: list[Any]) -> dict[str, Any]:
    """One variant's requests, valid rate, approval rate (with Wilson intervals) and mean attempts."""
    n = len(mine)
    valid = sum(1 for r in mine if r.valid)
    reviewed = [r for r in mine if r.feedback]
    approved = sum(1 for r in reviewed if r.feedback in ("approve", "edit"))
    return {
        "variant": name, "requests": n, "valid": valid, "valid_rate": valid / n if n else None,
        "valid_ci95": wilson(valid, n), "reviewed": len(reviewed), "approved": approved,
        "approval_rate": approved / len(reviewed) if reviewed else None,
        "approval_ci95": wilson(approved, len(reviewed)),
        "mean_attempts": round(sum(r.attempts for r in mine) / n, 3) if n else None,
    }


def _compare(base: dict[str, Any], other: dict[str, Any], comparisons: list[dict[str, Any]],
             notes: list[str]) -> None:
    """``other`` against ``base`` on valid rate and approval rate; a note for each test without enough data."""
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
