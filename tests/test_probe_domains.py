"""The probe domains (benchmarks/probe_domains: written by newcomers from docs/domains.md) load and pass
``domains check``: a stricter loader must say so here, not in a benchmark run."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_middleware.domains.authoring import check_domain

PROBES = Path(__file__).resolve().parents[1] / "benchmarks" / "probe_domains"


@pytest.mark.parametrize("name", ["log_query", "ticket_routing"])
def test_a_probe_domain_loads_and_passes_its_check(name):
    report = check_domain(PROBES / name, near_duplicates=False)
    assert report.ok, [p.message for p in report.problems]
    assert report.examples >= 25
