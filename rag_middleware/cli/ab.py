"""``rag-middleware ab report --domain D``: compare a domain's template-set variants."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from ..analytics.ab import ab_report
from ..memory.db import connect
from ..domains import DomainRegistry
from ..analytics.stats import load_rows
from .context import CliState, console

__all__ = ["app"]

app = typer.Typer(help="A/B tests of prompt template sets.", no_args_is_help=True)


def _ci(ci) -> str:
    return "-" if ci is None else f"[{ci[0]:.1%}, {ci[1]:.1%}]"


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


@app.command("report")
def report(
    ctx: typer.Context,
    domain: str = typer.Option(..., "--domain", "-d"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Valid rate, approval rate and mean attempts per variant, with Wilson 95% intervals and z-test p-values."""
    state: CliState = ctx.obj
    settings = state.settings()
    dom = DomainRegistry(settings.knowledge_base).get(domain)
    conn = connect(settings.db_path)
    try:
        result = ab_report(load_rows(conn, domain=dom.name), domain=dom.name, declared=dom.spec.variants)
    finally:
        conn.close()
    if as_json:
        console.print(json.dumps(result), markup=False, soft_wrap=True)
        return
    t = Table(title=f"A/B report: {dom.name}", title_justify="left")
    for col in ("variant", "requests", "valid rate", "95% CI", "reviewed", "approval rate", "95% CI", "mean attempts"):
        t.add_column(col)
    for v in result["variants"]:
        t.add_row(v["variant"], str(v["requests"]), _pct(v["valid_rate"]), _ci(v["valid_ci95"]), str(v["reviewed"]),
                  _pct(v["approval_rate"]), _ci(v["approval_ci95"]),
                  "-" if v["mean_attempts"] is None else f"{v['mean_attempts']:g}")
    console.print(t)
    for c in result["comparisons"]:
        p = "-" if c["p_value"] is None else f"{c['p_value']:.4f}"
        diff = "-" if c["difference"] is None else f"{c['difference']:+.1%}"
        verdict = "" if c["enough_data"] else "  (not enough data: do not conclude)"
        console.print(f"{c['metric']}: {c['b']} vs {c['a']} {diff}, two-proportion z-test p = {p}{verdict}",
                      markup=False)
    for note in result["notes"]:
        console.print(note, markup=False)
    if not result["variants"]:
        console.print(f"domain {dom.name} declares no variants and has no interactions with one", markup=False)
