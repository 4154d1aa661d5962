"""train --track-every (issue 16): statistics recorded every N steps, compactly, without changing the
training result; plot --stat draws them; info counts them instead of listing each."""
import numpy as np
import pytest

from femtogpt.io import logs as L
from femtogpt.io.model_file import load_model_file
from femtogpt.train.tracking import tensor_groups, track_names, tracked_series
from tests.run_cli import run, tiny_model_folder


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    tiny_model_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain.dat").write_bytes((tmp_path / "model.dat").read_bytes())
    return tmp_path


def test_tracking_records_statistics_and_changes_no_bit(workdir):
    common = ["--steps", 20, "--batch-size", 5, "--units", 3, "--dropout", 0.1, "--quiet", "--lr", "3e-3"]
    run("train", *common, "--track-every", 5)
    run("train", "--model", "plain.dat", *common)
    a, b = load_model_file(workdir / "model.dat"), load_model_file(workdir / "plain.dat")
    for name in a.tensors:
        np.testing.assert_array_equal(a.tensors[name], b.tensors[name], err_msg=name)
        np.testing.assert_array_equal(a.optimizer["v"][name], b.optimizer["v"][name], err_msg=name)
    assert L.step_count(a.logs) == L.step_count(b.logs) == 20
    series = tracked_series(a.logs)
    assert set(series) == set(track_names(a.hp)) and series["grad_norm"][0] == [5, 10, 15, 20]
    hp = a.hp
    for i in range(4):  # the groups partition the parameters: their squared norms add up to the global one
        groups = sum(series[f"{g}.grad"][1][i] ** 2 for g in tensor_groups(hp))
        assert groups == pytest.approx(series["grad_norm"][1][i] ** 2, rel=1e-4)
    assert all(0 < v < 1 for v in series["L0.attn.update"][1]) and all(v > 0 for v in series["L0.rms"][1])
    track = [log for log in a.logs if log["kind"] == L.TRACK][0]
    assert len(track["values"]) == 4 * len(track_names(hp))  # 4 bytes a statistic
    assert "statistics at 4 steps" in run("info").output


def test_plot_stat_draws_matching_statistics_and_names_them_when_missing(workdir):
    run("train", "--steps", 4, "--batch-size", 2, "--quiet", "--track-every", 2)
    assert run("plot", "--model", "model.dat", "--stat", "L*.rms", "--stat", "grad_norm", "--out", "s.png").output.startswith(
        "Wrote s.png (2 series)")
    assert (workdir / "s.png").read_bytes()[:4] == b"\x89PNG"
    result = run("plot", "--model", "plain.dat", "--stat", "grad_norm", "--out", "t.png", ok=False)
    assert result.exit_code == 1 and "none recorded: train with --track-every N" in result.output
