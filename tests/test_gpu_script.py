"""benchmarks/gpu.py, the GPU figures' script, in its --tiny mode on the CPU: every part runs
and its figures land in gpu.json, so the script is known to work before a GPU is lent."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu  # noqa: E402
import speed  # noqa: E402


def test_tiny_run_measures_every_part(tmp_path, capsys):
    models = ["gan_int_cls", "gawwn_keypoints"]
    code = gpu.main(["--tiny", "--out", str(tmp_path), "--models", *models, "--no-compile"])
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert code == 0, data["errors"]
    assert data["errors"] == [] and data["skipped"] == []
    settings = [s for s in gpu.SETTINGS if not gpu.SETTINGS[s][2]]
    assert {(r["model"], r["setting"]) for r in data["speed"]} == {
        (m, s) for m in models for s in settings
    }
    for r in data["speed"]:
        assert r["fit_images_per_s"] > 0 and r["bare_images_per_s"] > 0
        assert r["fit_over_bare"] == pytest.approx(r["fit_images_per_s"] / r["bare_images_per_s"])
        # the same weights give the same samples: exactly in fp32, to bf16's precision in bf16
        limit = 1e-5 if r["precision"] == "32-true" else 0.05
        assert r["sample_difference"] < limit, r
    slow = [r for r in data["speed"] if r["fit_over_bare"] < gpu.PROFILE_BELOW]
    assert len(data["profiles"]) == min(len(slow), gpu.MAX_PROFILES)
    for p in data["profiles"]:  # Lightning's SimpleProfiler report of a step's parts
        assert "run_training_batch" in p["report"] and p["fit_over_bare"] < gpu.PROFILE_BELOW
    (loader,) = data["loader"]
    assert loader["images_per_s"] > 0 and loader["cache"].endswith(".h5")
    assert data["cli"]["fit"]["returncode"] == 0, data["cli"]["fit"]["stderr_tail"]
    assert data["cli"]["generate"]["returncode"] == 0, data["cli"]["generate"]["stderr_tail"]
    assert "grid.png" in data["cli"]["generate"]["files"]
    table = capsys.readouterr().out
    assert "gawwn_keypoints  bf16+channels_last" in table and "t2igan generate: exit 0" in table


def test_budget_spent_records_the_rest_as_skipped(tmp_path):
    code = gpu.main(["--tiny", "--out", str(tmp_path), "--models", "gan_int_cls",
                     "--budget-s", "0"])  # fmt: skip
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert code == 0 and data["speed"] == [] and data["cli"] == {}
    assert data["skipped"][0] == "speed gan_int_cls fp32"
    # and the profiles, the CLI run and the one loader of --tiny
    assert len(data["skipped"]) == len(gpu.SETTINGS) + 3


def test_a_batch_that_does_not_fit_is_halved(monkeypatch):
    tried = []

    def measure(name, batch_size, *args):
        tried.append(batch_size)
        if batch_size > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return {"model": name, "batch_size": batch_size}

    monkeypatch.setattr(speed, "measure", measure)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    args = gpu.argparse.Namespace(rounds=1, steps=1, tiny=True)
    r = gpu.measure_speed("stackgan_stage2", "bf16", 64, args)
    assert tried == [64, 32, 16] and r["batch_size"] == 16 and r["setting"] == "bf16"
