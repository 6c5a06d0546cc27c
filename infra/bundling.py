"""Lambda code asset for the step functions, bundled without Docker.

The asset is `pipeline_steps/` (as the package `pipeline_steps`) next to its pinned dependencies from
`pipeline_steps/requirements-lambda.txt`. Locally, pip downloads the manylinux wheels for the Lambda
runtime's CPython (cross-platform: `--platform ... --only-binary=:all:`), so synth needs no Docker
daemon; the installed dependency folder is cached under
`$XDG_CACHE_HOME/fm-knn-topx/lambda-deps/<hash>` (default `~/.cache`), keyed by the requirements and
the target platform, so repeated synths only copy files. When pip cannot do it, `try_bundle` returns
False and CDK falls back to the same steps inside the runtime's Docker bundling image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

STEPS_DIR = Path(__file__).resolve().parent.parent / "pipeline_steps"
REQUIREMENTS = STEPS_DIR / "requirements-lambda.txt"
RUNTIME = lambda_.Runtime.PYTHON_3_12
PYTHON_VERSION = "3.12"
ARCHITECTURE = lambda_.Architecture.X86_64
# numpy >= 2.3 ships manylinux_2_28 wheels only; Lambda's python3.12 runs on Amazon Linux 2023
# (glibc 2.34), which accepts both tags. manylinux2014 (= 2_17) covers older pure-C wheels.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
EXCLUDE = ["__pycache__", "*.pyc", "requirements-lambda.txt"]
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fm-knn-topx" / "lambda-deps"


def pip_command(target: Path) -> list[str]:
    """The pip invocation (no index host: pip's own configuration decides where wheels come from)."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-compile", "--only-binary=:all:", "--implementation", "cp"]
    command += ["--python-version", PYTHON_VERSION, "--target", str(target), "-r", str(REQUIREMENTS)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    return command


def deps_key() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(f"{PYTHON_VERSION}|{'|'.join(PLATFORMS)}".encode())
    return digest.hexdigest()[:16]


def install_deps() -> Path:
    """Return the cached dependency folder, installing it with pip first if needed."""
    final = cache_root() / deps_key()
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="deps-", dir=final.parent))
    try:
        subprocess.run(pip_command(staging), check=True, capture_output=True, text=True)
        (staging / ".complete").write_text(REQUIREMENTS.read_text())
        try:
            staging.rename(final)
        except OSError:  # another synth finished first; its copy is identical
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _top_level_extras(root: Path, directory: str, names: list[str]) -> set[str]:
    return {".complete", "bin"} & set(names) if Path(directory) == root else set()


@jsii.implements(cdk.ILocalBundling)
class LocalPipBundling:
    """Bundle on the host: cached manylinux wheels + a copy of `pipeline_steps/`."""

    def try_bundle(self, output_dir: str, *args: object, **kwargs: object) -> bool:
        try:
            deps = install_deps()
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            print(f"local bundling failed, falling back to Docker: {detail.strip()[-2000:]}", file=sys.stderr)
            return False
        out = Path(output_dir)
        # Top-level bin/ holds console scripts (f2py) with this host's interpreter path: useless there.
        shutil.copytree(
            deps, out, dirs_exist_ok=True, ignore=lambda d, names: _top_level_extras(deps, d, names)
        )
        shutil.copytree(
            STEPS_DIR, out / "pipeline_steps", dirs_exist_ok=True, ignore=shutil.ignore_patterns(*EXCLUDE)
        )
        size = tree_size(out)
        print(f"lambda bundle: {size / 2**20:.1f} MiB unzipped (limit 250 MiB) at {out}", file=sys.stderr)
        if size > UNZIPPED_LIMIT_BYTES:
            raise RuntimeError(
                f"the Lambda bundle is {size / 2**20:.1f} MiB unzipped, over Lambda's 250 MiB limit"
            )
        return True


def step_code() -> lambda_.Code:
    """One code asset shared by every step function (handlers differ, code is the same)."""
    docker_command = (
        "pip install --no-cache-dir --only-binary=:all:"
        " -r /asset-input/requirements-lambda.txt -t /asset-output"
        " && mkdir -p /asset-output/pipeline_steps"
        " && cp -r /asset-input/. /asset-output/pipeline_steps/"
        " && rm -f /asset-output/pipeline_steps/requirements-lambda.txt"
    )
    return lambda_.Code.from_asset(
        str(STEPS_DIR),
        exclude=["__pycache__", "*.pyc"],
        bundling=cdk.BundlingOptions(
            image=RUNTIME.bundling_image,
            command=["bash", "-c", docker_command],
            local=LocalPipBundling(),
        ),
    )
