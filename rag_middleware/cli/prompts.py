"""``rag-middleware prompts``: look at what the assembler would send."""

from __future__ import annotations

import json
from typing import Optional

import typer

from .context import CliState, console
from .render import show_messages, show_selection, show_timings

__all__ = ["app"]

app = typer.Typer(help="Prompt templates: render what would be sent.", no_args_is_help=True)


@app.command("render")
def render(
    ctx: typer.Context,
    domain: str = typer.Option(..., "--domain", "-d"),
    request: str = typer.Option(..., "--request", "-r", help="the request text"),
    tenant: Optional[str] = typer.Option(None, "--tenant", "-t"),
    backend: Optional[str] = typer.Option(None, "--backend", help="embedded (flat prompt) | ollama (chat messages)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Retrieval, selection and assembly without calling the model; shows the time spent in each stage."""
    state: CliState = ctx.obj
    mw = state.middleware(**{"llm.backend": backend})
    with mw:
        assembly = mw.render(request.replace("\\n", "\n"), domain=domain, tenant=tenant)
    if as_json:
        console.print_json(json.dumps({
            "domain": assembly.domain,
            "messages": assembly.messages,
            "prompt": assembly.prompt,
            "selected": [s.model_dump() for s in assembly.selected],
            "negatives": [n.model_dump() for n in assembly.negatives],
            "template_version": assembly.template_version,
            "options": assembly.options,
            "prompt_tokens": assembly.prompt_tokens,
            "budget": assembly.budget,
            "timings_ms": assembly.timings_ms,
        }, default=str))
        return
    show_selection(assembly.selected, assembly.negatives)
    show_messages(assembly.messages, assembly.prompt)
    console.print(f"template version {assembly.template_version} · prompt tokens {assembly.prompt_tokens} · "
                  f"budget {assembly.budget}")
    show_timings(assembly.timings_ms)
