"""The packing benchmark: its window arithmetic on made-up stamps, then the script on real Ray Tune
(CPU: one core per trial stands in for the GPU's fractions; the script's path is the same)."""
from __future__ import annotations

import math

import pytest

from benchmarks import gpu_packing


def test_overlap_counts_intervals_open_at_once() -> None:
    assert gpu_packing.overlap([]) == 0
    assert gpu_packing.overlap([(0, 2), (1, 3), (2.5, 4)]) == 2
    assert gpu_packing.overlap([(0, 1), (1, 2)]) == 1  # one ends as the other starts
    assert gpu_packing.overlap([(0, 5), (1, 2), (1.5, 3)]) == 3


def test_window_is_the_time_every_trial_was_training() -> None:
    # trial a: epochs arrive at 1..6 s; trial b starts late, epochs at 3..8 s; 1 s per epoch
    stamps = {"a": [(float(t), 1.0) for t in range(1, 7)], "b": [(float(t), 1.0) for t in range(3, 9)]}
    row = gpu_packing.summarize(2, stamps, errors=0)
    assert row.window_s == 3.0  # from b's first result (3 s) to a's last (6 s)
    assert row.epochs == 12 and row.overlap == 2
    assert row.throughput == pytest.approx(6 / 3.0)  # a at 4, 5, 6 and b at 4, 5, 6
    alone = gpu_packing.summarize(1, {"a": stamps["a"]}, errors=0)
    assert alone.window_s == 5.0 and alone.throughput == pytest.approx(1.0) and alone.overlap == 1


def test_trials_that_never_overlap_give_no_throughput() -> None:
    row = gpu_packing.summarize(2, {"a": [(1.0, 1.0), (2.0, 1.0)], "b": [(5.0, 1.0), (6.0, 1.0)]}, errors=1)
    assert math.isnan(row.throughput) and row.errors == 1 and row.overlap == 1


@pytest.mark.integration
def test_script_runs_n_trials_at_once_through_tune(ray_local: None, capsys: pytest.CaptureFixture[str]) -> None:
    code = gpu_packing.main(["--device", "cpu", "--packing", "1", "2", "--epochs", "4", "--dataset", "mnist5k",
                             "--decoder", "mlp_small", "--width", "0.25"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("packing on cpu"))) + 2:]
    rows = [line.split() for line in table]
    assert [r[0] for r in rows] == ["1", "2"]
    for n, epochs, window, throughput, ratio, seconds, overlap, errors in rows:
        assert int(epochs) == 4 * int(n) and int(overlap) == int(n) and int(errors) == 0
        assert float(window) > 0 and float(throughput) > 0 and float(seconds) > 0
    assert float(rows[0][4]) == 1.0


def test_cuda_without_a_gpu_is_refused_with_the_way_out(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_packing.main(["--device", "cuda"]) == 2
    assert "--device cpu" in capsys.readouterr().err


def test_bad_decoder_is_refused_before_ray_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu_packing.main(["--device", "cpu", "--decoder", "no_such_decoder"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid trial settings" in err and "no_such_decoder" in err
