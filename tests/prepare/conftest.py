"""Helpers for the prepare tests: write files into a temp 'bucket' and run the core on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline_steps.formats import recordio
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import prepare
from pipeline_steps.prepare.storage import LocalStorage


class Run:
    """One prepare run on local directories, with readers for every output."""

    def __init__(self, root: Path, manifest: dict) -> None:
        self.root, self.manifest = root, manifest
        self.out = root / "out"

    def path(self, key: str) -> Path:
        return self.out / key

    def json(self, name: str):
        return json.loads(self.path(self.manifest["files"][name]).read_text(encoding="utf-8"))

    @property
    def users(self) -> list[str]:
        return self.json("users")

    @property
    def items(self) -> list[str]:
        return self.json("items")

    @property
    def report(self) -> dict:
        return self.json("report")

    def csr(self, name: str) -> dict[str, set[str]]:
        """{user id: {item ids}} of seen.npz / holdout.npz."""
        z = np.load(self.path(self.manifest["files"][name]))
        users, items = self.users, self.items
        out: dict[str, set[str]] = {}
        for u in range(len(users)):
            lo, hi = z["indptr"][u], z["indptr"][u + 1]
            if hi > lo:
                out[users[u]] = {items[i] for i in z["indices"][lo:hi]}
        return out

    def rows(self, channel: str) -> list[tuple[str, str, float]]:
        """Decoded FM rows of a channel as (user id, item id, label)."""
        n_users = self.manifest["n_users"]
        users, items = self.users, self.items
        out = []
        for key in self.manifest[f"{channel}_shards"]:
            data, indices, indptr, shape, labels = recordio.read_sparse(self.path(key).read_bytes())
            assert shape[1] == self.manifest["feature_dim"]
            assert data.dtype == np.float32 and labels.dtype == np.float32
            assert np.all(data == 1.0) and np.all(np.diff(indptr) == 2)
            u, c = indices[0::2].astype(np.int64), indices[1::2].astype(np.int64)
            assert np.all(u < n_users) and np.all(c >= n_users)
            out += [(users[a], items[b - n_users], float(y)) for a, b, y in zip(u, c, labels, strict=True)]
        return out


@pytest.fixture
def run_prepare(tmp_path: Path):
    counter = {"n": 0}

    def run(files: dict[str, bytes | str], run_id: str = "r1", out: Path | None = None, **config) -> Run:
        counter["n"] += 1
        src = tmp_path / f"src{counter['n']}"
        for key, data in files.items():
            p = src / key
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        config.setdefault("input_prefix", "input/")
        cfg = PrepareConfig.from_dict(config)
        dest = out or tmp_path / f"out{counter['n']}"
        manifest = prepare(
            cfg,
            source=LocalStorage(src),
            sink=LocalStorage(dest),
            run_id=run_id,
            out_prefix=f"runs/{run_id}/prepared/",
        )
        r = Run(tmp_path, manifest)
        r.out = dest
        return r

    return run
