"""The package rule: steps import `common` and `formats`, never another step.

What each package under pipeline_steps/ may import besides itself:

- a step (guard, prepare, repackage, evaluate, publish, query, report): common, formats;
- common (the run contract): formats;
- formats (wire formats), datasets (public data download): nothing;
- local_algorithms (SageMaker's algorithms, emulated): common, formats;
- local (the developer's runner: deploys the app and drives every step): anything.

infra may import common and the steps' `config` modules (validated at synth); it
names handlers as strings, never imports a step's core. A package missing here fails the test
until it is added.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipeline_steps"
STEPS = ("guard", "prepare", "repackage", "evaluate", "publish", "query", "report")
ALLOWED: dict[str, set[str]] = {
    **{step: {"common", "formats"} for step in STEPS},
    "common": {"formats"},
    "formats": set(),
    "datasets": set(),
    "local_algorithms": {"common", "formats"},
}
ANYTHING = {"local"}
INFRA_ALLOWED = {"common", *(f"{step}.config" for step in STEPS)}


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, module under pipeline_steps) of every import in one file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = [*package.split("."), *path.relative_to(PACKAGE.parent).with_suffix("").parts[1:]]
    if path.name == "__init__.py":
        here = here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + (1 if path.name == "__init__.py" else 0)]
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                module = node.module or ""
            # `from pipeline_steps.common import sizing` imports the submodule sizing.
            names = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.startswith("pipeline_steps.")]
    return found


def allowed(target: str, rules: set[str]) -> bool:
    rest = target.removeprefix("pipeline_steps.")
    return any(rest == rule or rest.startswith(rule + ".") for rule in rules)


def packages() -> list[str]:
    return sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())


def test_every_package_has_a_rule() -> None:
    assert set(packages()) <= set(ALLOWED) | ANYTHING, "add the new package to the table in this module"


@pytest.mark.parametrize("package", [p for p in packages() if p not in ANYTHING])
def test_package_imports_follow_the_rule(package: str) -> None:
    rules = ALLOWED.get(package, set()) | {package}
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {target}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for line, target in imported_modules(path, "pipeline_steps")
        if not allowed(target, rules)
    ]
    assert not bad, f"pipeline_steps/{package} may import only {sorted(rules)}:\n" + "\n".join(bad)


def test_infra_imports_only_the_contract_and_step_configs() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {target}"
        for path in sorted((ROOT / "infra").rglob("*.py"))
        for line, target in imported_modules(path, "infra")
        if not allowed(target, INFRA_ALLOWED)
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_cross_step_import() -> None:
    module = PACKAGE / "evaluate" / "core.py"
    assert any(t.startswith("pipeline_steps.common.") for _, t in imported_modules(module, "pipeline_steps"))
    assert not allowed("pipeline_steps.publish.core", ALLOWED["evaluate"] | {"evaluate"})
    assert allowed("pipeline_steps.formats.recordio", ALLOWED["evaluate"])
