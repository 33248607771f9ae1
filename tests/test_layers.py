"""The import-linter contracts in pyproject.toml: t2igan's layers run one way (cli <- callbacks
<- metrics <- models <- data <- leaf modules) and no two modules of a folder import each other.
The real tree keeps them; a copy with an upward import or a circle breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

LINT = Path(sys.executable).with_name("lint-imports")
pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)})  # fmt: skip


def copy_with(tmp_path: Path, file: str, line: str) -> Path:
    shutil.copytree(ROOT / "t2igan", tmp_path / "t2igan",
                    ignore=shutil.ignore_patterns("__pycache__", "*.ckpt"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / file, "a") as f:
        f.write(f"\n{line}  # noqa\n")
    return tmp_path


def test_the_tree_keeps_its_layers():
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def test_an_upward_import_breaks_them(tmp_path):
    proc = lint(copy_with(tmp_path, "t2igan/data/text.py", "import t2igan.models.base"))
    assert proc.returncode == 1
    assert "t2igan.data is not allowed to import t2igan.models" in proc.stdout


def test_a_circle_inside_a_folder_breaks_them(tmp_path):
    line = "from t2igan.models import style_encoder"  # which imports gan_int_cls
    proc = lint(copy_with(tmp_path, "t2igan/models/gan_int_cls.py", line))
    assert proc.returncode == 1
    assert "No cycles are allowed in t2igan.models" in proc.stdout
