"""Loss, accuracy, precision, recall and F1 of a model on a set of pairs."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aivj_assets.training.dataset import PairTensors


def weighted_bce(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged with the rows' weights (the training loss)."""
    total = F.binary_cross_entropy_with_logits(logits.float(), label, weight=weight, reduction="sum")
    return total / weight.sum().clamp_min(1e-12)


@torch.no_grad()
def _logits(model: nn.Module, data: PairTensors, batch_size: int, device: str | torch.device) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        out = [
            model(data.audio[i : i + batch_size].to(device), data.preset[i : i + batch_size].to(device)).float()
            for i in range(0, len(data), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, device=device)


def predict(model: nn.Module, data: PairTensors, *, batch_size: int = 4096, device: str = "cpu") -> np.ndarray:
    """Predicted label (logit > 0) per row, as a numpy bool array."""
    return (_logits(model, data, batch_size, device) > 0).cpu().numpy()


def evaluate(model: nn.Module, data: PairTensors, *, batch_size: int = 4096, device: str = "cpu") -> dict:
    """``loss, accuracy, f1, precision, recall, n`` of ``model`` on ``data`` (NaN when empty)."""
    return evaluate_rows(model, data, batch_size=batch_size, device=device)[0]


def evaluate_rows(model: nn.Module, data: PairTensors, *, batch_size: int = 4096,
                  device: str | torch.device = "cpu") -> tuple[dict, np.ndarray]:
    """:func:`evaluate`'s figures and each row's logit (float64), from one pass over ``data``."""
    n = len(data)
    if n == 0:
        nan = math.nan
        return {"loss": nan, "accuracy": nan, "f1": nan, "precision": nan, "recall": nan, "n": 0}, np.zeros(0)
    logits = _logits(model, data, batch_size, device)
    label = data.label.to(logits.device)
    weight = data.weight.to(logits.device)
    loss = float(weighted_bce(logits, label, weight))
    pred = logits > 0
    truth = label > 0.5
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    figures = {
        "loss": loss,
        "accuracy": float((pred == truth).float().mean()),
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "n": n,
    }
    return figures, logits.double().cpu().numpy()
