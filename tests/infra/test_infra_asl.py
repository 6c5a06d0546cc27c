"""The rendered state machine definition passes the pinned npm asl-validator (and a broken one fails)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT, Synth, render_asl

VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"


def _validate(definition: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "definition.asl.json"
    path.write_text(json.dumps(definition))
    return subprocess.run(
        [str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60
    )


def test_default_definition_is_valid(default_synth: Synth, tmp_path: Path) -> None:
    result = _validate(render_asl(default_synth.template("pipeline")), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_definition_with_every_option_is_valid(options_synth: Synth, tmp_path: Path) -> None:
    result = _validate(render_asl(options_synth.template("pipeline")), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("breakage", ["dangling_next", "catch_without_next"])
def test_validator_rejects_a_broken_definition(default_synth: Synth, tmp_path: Path, breakage: str) -> None:
    definition = render_asl(default_synth.template("pipeline"))
    if breakage == "dangling_next":
        definition["States"]["Prepare"]["Next"] = "NoSuchState"
    else:
        del definition["States"]["Transform"]["Catch"][0]["Next"]
    result = _validate(definition, tmp_path)
    assert result.returncode != 0
