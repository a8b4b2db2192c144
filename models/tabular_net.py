"""The PyTorch tabular network: embeddings for categoricals, standardised numerics, a small MLP, one logit out.

Serving imports this module to rebuild the network from its saved configuration and weights: torch only.
"""

from __future__ import annotations

import torch
from torch import nn

MONO_STEPS = 8


def embedding_dim(levels: int) -> int:
    """A common rule of thumb: grow with the number of levels, capped at 16."""
    return int(min(16, max(2, round(1.6 * levels ** 0.56))))


class TabularNet(nn.Module):
    """x_num (batch, n_num) float, x_cat (batch, n_cat) long codes -> (batch,) logits."""

    def __init__(self, n_num: int, cardinalities: list[int], hidden: list[int] | None = None,
                 dropout: float = 0.1, increasing: list[int] | None = None) -> None:
        super().__init__()
        hidden = hidden or [128, 64]
        increasing = list(increasing or [])
        self.config = {"n_num": n_num, "cardinalities": list(cardinalities), "hidden": list(hidden),
                       "dropout": dropout, "increasing": increasing}
        # numeric columns listed in `increasing` bypass the MLP through a sum of rising steps (sigmoids with
        # positive slopes and heights) plus a positive linear term, so the logit can only rise with them: the
        # direction the boosters get from their monotone constraints
        self.register_buffer("keep", torch.tensor([i for i in range(n_num) if i not in increasing], dtype=torch.long))
        self.register_buffer("mono", torch.tensor(increasing, dtype=torch.long))
        m = len(increasing)
        self.mono_linear = nn.Parameter(torch.zeros(m))
        self.mono_height = nn.Parameter(torch.zeros(m, MONO_STEPS))
        self.mono_slope = nn.Parameter(torch.zeros(m, MONO_STEPS))
        self.mono_center = nn.Parameter(torch.linspace(-2, 2, MONO_STEPS).repeat(m, 1))
        self.embeddings = nn.ModuleList(nn.Embedding(k, embedding_dim(k)) for k in cardinalities)
        width = n_num - len(increasing) + sum(embedding_dim(k) for k in cardinalities)
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        parts = [x_num[:, self.keep]] + [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
        out = self.mlp(torch.cat(parts, dim=1)).squeeze(1)
        if len(self.mono):
            x = x_num[:, self.mono]
            softplus = nn.functional.softplus
            steps = torch.sigmoid(softplus(self.mono_slope) * 2 * (x.unsqueeze(2) - self.mono_center))
            out = out + (steps * softplus(self.mono_height)).sum(dim=(1, 2)) + x @ softplus(self.mono_linear)
        return out


def predict_logits(net: TabularNet, x_num, x_cat, batch: int = 65536):  # noqa: ANN001, ANN201 - numpy in and out
    """Logits for numpy arrays, in eval mode, without autograd (inference mode), in batches."""
    import numpy as np

    if net.training:
        net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x_num), batch):
            xn = torch.from_numpy(x_num[start:start + batch])
            xc = torch.from_numpy(x_cat[start:start + batch])
            out.append(net(xn, xc).numpy())
    return np.concatenate(out) if out else np.zeros(0, "float32")
