"""The Lambda code asset: built without Docker, holds every handler and Linux numpy, under 250 MB."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from infra import bundling
from tests.infra.conftest import Synth, resources


def _asset_dir(synth: Synth) -> Path:
    manifest = json.loads((synth.outdir / "fm-knn-topx-pipeline.assets.json").read_text())
    (path,) = [
        f["source"]["path"] for f in manifest["files"].values() if f["source"].get("packaging") == "zip"
    ]
    return synth.outdir / path


def test_bundle_has_every_handler_and_linux_numpy_and_fits_lambda(default_synth: Synth) -> None:
    asset = _asset_dir(default_synth)
    handlers = {
        f["Properties"]["Handler"]
        for f in resources(default_synth.template("pipeline"), "AWS::Lambda::Function").values()
    }
    for handler in handlers:
        module = handler.rsplit(".", 1)[0]
        assert (asset / (module.replace(".", "/") + ".py")).is_file(), handler
    so = list((asset / "numpy" / "_core").glob("_multiarray_umath.cpython-312-x86_64-linux-gnu.so"))
    assert so, "numpy for CPython 3.12 / manylinux x86_64 is missing"
    assert (asset / "numpy-2.4.6.dist-info").is_dir()
    # prepare's SQL engine: the Linux x86_64 build (the venv's own build would not load in Lambda)
    assert (asset / "duckdb-2.0.0.dist-info").is_dir()
    native = asset / "_duckdb.abi3.so"
    head = native.read_bytes()[:20] if native.is_file() else b""
    assert head[:4] == b"\x7fELF" and head[18:20] == b"\x3e\x00", "duckdb for Linux x86_64 is missing"
    assert not list(asset.rglob("__pycache__"))
    size = bundling.tree_size(asset)
    assert 10 * 2**20 < size < bundling.UNZIPPED_LIMIT_BYTES
    print(f"lambda bundle: {size / 2**20:.1f} MiB unzipped")


def test_bundle_handlers_import_with_the_bundled_layout(default_synth: Synth) -> None:
    """The guard handler resolves from the bundle root (the package is `pipeline_steps`, not a subdir)."""
    asset = _asset_dir(default_synth)
    spec = importlib.util.spec_from_file_location(
        "bundled_guard_core", asset / "pipeline_steps/guard/core.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.run_id_for("nightly") == "nightly"


def test_cli_synth_needed_no_docker_and_reported_the_size(options_synth: Synth) -> None:
    # CDK_DOCKER pointed at a missing binary: any Docker fallback would have failed the synth.
    assert "lambda bundle:" in options_synth.cli_output
    assert "falling back to Docker" not in options_synth.cli_output


def test_pip_invocation_targets_the_lambda_runtime_without_an_index_host() -> None:
    command = bundling.pip_command(Path("/tmp/target"))
    text = " ".join(command)
    assert (
        "--only-binary=:all:" in command and "--python-version 3.12" in text and "--implementation cp" in text
    )
    assert "--platform manylinux_2_28_x86_64" in text and "--platform manylinux2014_x86_64" in text
    assert "index-url" not in text and "http" not in text and "--find-links" not in text
    assert bundling.RUNTIME.name == "python3.12"
