"""The mypy configuration keeps its promises: every step handler is checked strictly, and the boto3
stubs stay a type-checking matter (never imported at run time, never in the Lambda bundle).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipeline_steps"

# The flags `--strict` turns on that can be set per module (mypy 2.4). `strict = true` itself must
# not appear in an override: mypy applies it to the whole run, not to the override's modules.
STRICT_FLAGS = {
    "disallow_any_generics": True,
    "disallow_subclassing_any": True,
    "disallow_untyped_calls": True,
    "disallow_untyped_defs": True,
    "disallow_incomplete_defs": True,
    "disallow_untyped_decorators": True,
    "warn_return_any": True,
    "implicit_reexport": False,
    "strict_equality": True,
    "extra_checks": True,
}


def mypy_config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    return config


def strict_override() -> dict[str, Any]:
    (override,) = [o for o in mypy_config().get("overrides", []) if o.get("disallow_untyped_defs")]
    return override


def test_no_override_sets_strict() -> None:
    assert not [o["module"] for o in mypy_config().get("overrides", []) if "strict" in o]


def test_strict_override_sets_every_strict_flag() -> None:
    override = strict_override()
    assert {flag: override.get(flag) for flag in STRICT_FLAGS} == STRICT_FLAGS
    config = mypy_config()
    assert config["warn_unused_ignores"] and config["warn_redundant_casts"] and config["check_untyped_defs"]


def test_every_handler_app_and_infra_are_strict() -> None:
    handlers = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts) for path in PACKAGE.glob("*/handler.py")
    }
    assert handlers, "no handler found"
    modules = set(strict_override()["module"])
    assert handlers <= modules, f"add to the strict override in pyproject.toml: {sorted(handlers - modules)}"
    assert {"app", "infra", "infra.*"} <= modules


def test_no_blanket_ignores() -> None:
    for override in mypy_config().get("overrides", []):
        assert "ignore_errors" not in override and "disable_error_code" not in override, override
    sources = [ROOT / "app.py", *(ROOT / "infra").rglob("*.py"), *PACKAGE.rglob("*.py")]
    bare = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sources
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "# type: ignore" in line and "# type: ignore[" not in line
    ]
    assert not bare


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def test_stubs_are_imported_for_type_checking_only() -> None:
    """A `mypy_boto3_*` import outside `if TYPE_CHECKING:` would fail in the Lambda runtime."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        guarded = {
            id(inner) for node in ast.walk(tree) if _type_checking_block(node) for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if id(node) not in guarded and any(n.split(".")[0].startswith("mypy_boto3") for n in names):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad


def test_lambda_bundle_has_no_stubs() -> None:
    lines = (PACKAGE / "requirements-lambda.txt").read_text().splitlines()
    assert not [line for line in lines if "stubs" in line or line.startswith("mypy")]
