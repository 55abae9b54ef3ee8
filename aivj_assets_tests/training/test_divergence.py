"""The per-epoch rules: rising validation loss, oscillation, and restoring the best epoch's weights."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from aivj_assets.training.divergence import Counters, judge_epoch
from aivj_assets.training.loop import train
from aivj_assets.training.metrics import evaluate

from .test_loop import _config, _data, _model

RULES = dict(val_loss_rise_epochs=3, loss_change_max=0.5, worsen_epochs=2)


def _run(records: list[tuple[float, float, float]]) -> tuple[list[dict], Counters, list[bool]]:
    """Feed (selection_loss, selection_accuracy, selection_f1) epochs through the rules; events, counters, restores."""
    history, counters, events, restores = [], Counters(), [], []
    for i, (loss, acc, f1) in enumerate(records, 1):
        history.append({"epoch": i, "step": 10 * i, "selection_loss": loss, "selection_accuracy": acc, "selection_f1": f1,
                        "train_loss": loss})
        new, restore = judge_epoch(history, counters, **RULES)
        events += new
        restores.append(restore)
    return events, counters, restores


def test_val_loss_rising_three_epochs_in_a_row_is_reported_once():
    events, _, _ = _run([(0.5, 0.8, 0.8), (0.51, 0.8, 0.8), (0.52, 0.8, 0.8), (0.53, 0.8, 0.8), (0.54, 0.8, 0.8)])
    rising = [e for e in events if e["kind"] == "val_loss_rising"]
    assert [e["epoch"] for e in rising] == [4]
    events, _, _ = _run([(0.5, 0.8, 0.8), (0.51, 0.8, 0.8), (0.50, 0.8, 0.8), (0.52, 0.8, 0.8)])
    assert not [e for e in events if e["kind"] == "val_loss_rising"]


def test_a_jump_of_more_than_half_is_an_oscillation():
    events, _, _ = _run([(0.4, 0.8, 0.8), (0.65, 0.8, 0.8), (0.3, 0.8, 0.8)])
    osc = [e for e in events if e["kind"] == "loss_oscillation"]
    assert [e["epoch"] for e in osc] == [2] and "+62%" in osc[0]["message"]


def test_metrics_worse_two_epochs_in_a_row_restore_the_best():
    events, counters, restores = _run([(0.5, 0.80, 0.80), (0.4, 0.90, 0.90), (0.45, 0.85, 0.84),
                                       (0.5, 0.84, 0.83), (0.5, 0.86, 0.86)])
    assert restores == [False, False, False, True, False]
    assert counters.best_epoch == 2 and counters.restored_best == 1
    assert [e["kind"] for e in events if e["kind"] == "restored_best"] == ["restored_best"]
    assert "epoch 2" in next(e["message"] for e in events if e["kind"] == "restored_best")


def test_loop_restores_best_weights_when_training_turns_bad(tmp_path: Path):
    train_rows, val = _data()
    flipped = train_rows.subset(torch.arange(len(train_rows)))
    flipped.label = 1 - flipped.label
    calls = {"n": 0}

    def data():
        calls["n"] += 1  # read once per epoch: from the fourth epoch on, the labels lie
        return train_rows if calls["n"] <= 3 else flipped

    result = train(_model(), data, selection=val, log=lambda line: None,
                   config=_config(tmp_path, epochs=5, learning_rate=2e-2))
    accs = [h["selection_accuracy"] for h in result.history]
    assert accs[3] < accs[2] and accs[4] < accs[3], accs
    restored = [e for e in result.events if e["kind"] == "restored_best"]
    assert [e["epoch"] for e in restored] == [5]
    # The weights handed back are the best epoch's: they score exactly its selection accuracy.
    best = max(range(5), key=lambda i: (accs[i], -result.history[i]["selection_loss"]))
    assert result.best_epoch == best + 1
    model = _model()
    model.load_state_dict(result.state_dict)
    assert math.isclose(evaluate(model, val)["accuracy"], accs[best])
