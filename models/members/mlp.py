"""PyTorch member: TabularNet (embeddings + standardised numerics), AdamW, early stopping on validation log loss.

Seeded and deterministic on CPU: the same data, parameters and seed give the same weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from models.members import Fitted, Member, MemberData, report_or_prune
from models.preprocess import cardinalities, mlp_arrays

PATIENCE = 8
HIDDEN = {"64-32": [64, 32], "128-64": [128, 64], "256-128": [256, 128]}


def defaults() -> dict:
    return {"lr": 2e-3, "weight_decay": 1e-5, "dropout": 0.1, "hidden": "128-64", "batch_size": 512}


def suggest(trial: Any, data: MemberData | None = None) -> dict:
    return {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-7, 1e-3, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
            "hidden": trial.suggest_categorical("hidden", list(HIDDEN)),
            "batch_size": trial.suggest_categorical("batch_size", [256, 512, 1024])}


def _logloss(y: np.ndarray, z: np.ndarray) -> float:
    # log(1 + e^-z) for positives, log(1 + e^z) for negatives, computed stably
    return float(np.mean(np.logaddexp(0.0, np.where(y > 0, -z, z))))


def fit(data: MemberData, params: dict, seed: int = 0, trial: Any = None) -> Fitted:
    import torch

    from models.tabular_net import TabularNet, predict_logits

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    (xn_tr, xc_tr), valid = data.mlp
    y_tr = torch.from_numpy(data.y_train.astype("float32"))
    xn_t, xc_t = torch.from_numpy(xn_tr), torch.from_numpy(xc_tr)
    numeric = data.schema.numeric  # x_num's first columns are the numerics in this order (missing flags follow)
    increasing = [numeric.index(f) for f in data.increasing if f in numeric]
    net = TabularNet(xn_tr.shape[1], cardinalities(data.schema), HIDDEN[params["hidden"]], params["dropout"],
                     increasing)
    opt = torch.optim.AdamW(net.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    # large sets get larger batches so an epoch stays a few hundred steps
    batch = max(int(params["batch_size"]), len(y_tr) // 400)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, history, stale = float("inf"), None, 0, [], 0
    epochs = data.max_epochs if data.rounds is None else max(1, data.rounds)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y_tr), generator=gen)
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            if len(idx) < 2:  # BatchNorm needs two rows
                continue
            opt.zero_grad()
            loss_fn(net(xn_t[idx], xc_t[idx]), y_tr[idx]).backward()
            opt.step()
        if valid is None:  # a fixed number of epochs on every row
            best_state, best_epoch = copy.deepcopy(net.state_dict()), epoch
            continue
        loss = _logloss(data.y_valid, predict_logits(net, *valid).astype("float64"))
        history.append(loss)
        if loss < best - 1e-5:
            best, best_state, best_epoch, stale = loss, copy.deepcopy(net.state_dict()), epoch, 0
        else:
            stale += 1
        report_or_prune(trial, loss, epoch)
        if stale >= PATIENCE:
            break
    net.load_state_dict(best_state)
    net.eval()
    valid_logit = None if valid is None else predict_logits(net, *valid).astype("float64")
    return Fitted("mlp", net, params, valid_logit, best_epoch, history)


def predict(fitted: Fitted, data: MemberData, frame) -> np.ndarray:  # noqa: ANN001 - pandas DataFrame
    from models.tabular_net import predict_logits

    return predict_logits(fitted.model, *mlp_arrays(frame, data.schema)).astype("float64")


def save(fitted: Fitted, bundle: Path) -> None:
    import torch

    torch.save(fitted.model.state_dict(), Path(bundle) / "mlp.pt")
    (Path(bundle) / "mlp.json").write_text(json.dumps(fitted.model.config))


def importance(fitted: Fitted, features: list[str]) -> dict[str, float]:
    return {}  # no cheap, faithful global importance for the network; the boosters' gains are reported


MEMBER = Member("mlp", defaults, suggest, fit, save, importance, predict)
