"""Mutation testing of the core modules with mutmut, each module against its own fast tests.

    python mutation/run.py [module ...]      (make mutation; names below, all when none given)

For each module a scratch project is built in mutation/work/<name>/ (a copy of the package, the tests, the
knowledge base and the prompts, with a setup.cfg that tells mutmut which file to mutate and which test files
to run), and ``mutmut run`` runs there with at most two workers. Every mutant of the module is run against
the tests among those files that reach the mutated function. The script prints one score line per module and
an overall one, and writes the surviving mutants to mutation/work/survivors.txt (``mutmut show NAME`` in the
module's work dir prints one). Mutants listed in mutation/equivalent.txt are reported apart, not counted.
Exit status: 0 when the overall score reaches --target (85 by default), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "mutation" / "work"
EQUIVALENT = ROOT / "mutation" / "equivalent.txt"

# module -> the fast test files that exercise it (never the whole suite)
MODULES: dict[str, tuple[str, list[str]]] = {
    "selection": ("rag_middleware/request/selection.py",
                  ["tests/test_selection.py", "tests/test_regressions_request.py"]),
    "validation": ("rag_middleware/domains/validation.py",
                   ["tests/test_validation.py", "tests/test_validation_details.py",
                    "tests/test_regressions_request.py"]),
    "attempts": ("rag_middleware/request/attempts.py",
                 ["tests/test_attempt_loop.py", "tests/test_regressions_request.py"]),
    "outbox": ("rag_middleware/memory/stores/outbox.py", ["tests/test_regressions_memory.py"]),
    "pii": ("rag_middleware/learning/pii.py", ["tests/test_regressions_memory.py"]),
    "clauses": ("rag_middleware/domains/clauses.py", ["tests/test_clauses.py"]),
    "wire": ("rag_middleware/server/wire.py", ["tests/test_regressions_wire.py"]),
}
COPY = ["rag_middleware", "tests", "knowledge_base", "prompts"]
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
LINE = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")


def pytest_ini() -> str:
    """The project's pytest settings (pyproject.toml) as a pytest.ini, so the scratch copy tests the same way."""
    opts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    lines = ["[pytest]"]
    for key, value in opts.items():
        if key == "testpaths":
            continue
        if isinstance(value, list):
            lines.append(f"{key} =")
            lines += [f"    {v}" for v in value]
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def setup_cfg(module: str, tests: list[str]) -> str:
    selection = "\n".join(f"    {t}" for t in tests)
    return (
        "[mutmut]\n"
        "source_paths = rag_middleware\n"
        f"only_mutate = {module}\n"
        f"pytest_add_cli_args_test_selection =\n{selection}\n"
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -q\n"
        "also_copy =\n    knowledge_base\n    prompts\n    pytest.ini\n"
        "use_git_change_detection = false\n"
    )


def prepare(name: str) -> Path:
    module, tests = MODULES[name]
    tests = [t for t in tests if (ROOT / t).exists()]
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "openwebui")
    for item in COPY:
        shutil.copytree(ROOT / item, work / item, ignore=ignore)
    (work / "pytest.ini").write_text(pytest_ini(), encoding="utf-8")
    (work / "setup.cfg").write_text(setup_cfg(module, tests), encoding="utf-8")
    return work


def statuses(work: Path, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env,
                         capture_output=True, text=True, check=False).stdout
    return {m["name"]: m["status"].strip() for m in map(LINE.match, out.splitlines()) if m}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target", type=float, default=85.0)
    args = parser.parse_args()
    names = args.modules or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    equivalent = set()
    if EQUIVALENT.exists():
        equivalent = {line.split("#")[0].strip() for line in EQUIVALENT.read_text(encoding="utf-8").splitlines()}
        equivalent.discard("")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    started = time.monotonic()
    totals = [0, 0]
    survivors: list[str] = []
    report: list[str] = []
    for name in names:
        t0 = time.monotonic()
        work = prepare(name)
        print(f"== {name}: mutating {MODULES[name][0]}", flush=True)
        run = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.workers)],
                             cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             check=False)
        found = statuses(work, env)
        if run.returncode != 0 or not found:
            print(f"mutmut failed for {name} (exit {run.returncode}):\n{run.stderr[-3000:]}", file=sys.stderr)
            return 2
        counted = {k: v for k, v in found.items() if k not in equivalent}
        killed = sum(1 for v in counted.values() if v in KILLED)
        left = sorted(f"{name}\t{k}\t{v}" for k, v in counted.items() if v not in KILLED)
        survivors += left
        totals[0] += killed
        totals[1] += len(counted)
        line = (f"mutation score {name}: {killed}/{len(counted)} killed "
                f"({100.0 * killed / max(1, len(counted)):.1f}%), {len(found) - len(counted)} equivalent, "
                f"{time.monotonic() - t0:.0f}s")
        report.append(line)
        print(line, flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "survivors.txt").write_text("".join(f"{s}\n" for s in survivors), encoding="utf-8")
    score = 100.0 * totals[0] / max(1, totals[1])
    print("\n".join(["", *report]))
    print(f"mutation score overall: {totals[0]}/{totals[1]} killed ({score:.1f}%), "
          f"{time.monotonic() - started:.0f}s; target {args.target:g}%; survivors in {WORK / 'survivors.txt'}")
    return 0 if score >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
