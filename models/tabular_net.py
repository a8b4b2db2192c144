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


class NumpyNet:
    """The network's eval-mode function in numpy (float32, as torch runs it): what `predict_logits` computes, to
    float32 rounding (the layers are folded in float64 first).

    Batch norms are folded into the linear layers before them and each embedding table into the first layer
    (a lookup of its rows' first-layer inputs), so one lead costs a gather and a few small matrix products instead of
    torch's per-module dispatch (about 40 us against 270 us for 8 leads on this machine's CPU)."""

    def __init__(self, net: TabularNet) -> None:
        import numpy as np

        if net.training:
            net.eval()
        layers: list[list] = []  # [weight, bias, relu after]
        with torch.no_grad():
            for module in net.mlp:
                if isinstance(module, nn.Linear):
                    layers.append([module.weight.double().numpy().copy(), module.bias.double().numpy().copy(), False])
                elif isinstance(module, nn.BatchNorm1d):
                    scale = (module.weight / torch.sqrt(module.running_var + module.eps)).double().numpy()
                    w, b, _ = layers[-1]
                    layers[-1][0] = w * scale[:, None]
                    layers[-1][1] = (b - module.running_mean.double().numpy()) * scale + module.bias.double().numpy()
                elif isinstance(module, nn.ReLU):
                    layers[-1][2] = True
                elif not isinstance(module, nn.Dropout):
                    raise TypeError(f"NumpyNet cannot run a {type(module).__name__} layer")
            self.keep = net.keep.numpy().copy()
            self.mono = net.mono.numpy().copy()
            first, n_keep = layers[0][0], len(self.keep)
            tables, offsets, col = [], [], n_keep
            for emb in net.embeddings:
                table = emb.weight.double().numpy()
                tables.append(table @ first[:, col:col + table.shape[1]].T)  # (levels, first layer width)
                offsets.append(sum(len(t) for t in tables[:-1]))
                col += table.shape[1]
            f32 = np.float32
            self.first_num = first[:, :n_keep].T.astype(f32)
            self.first_cat = (np.vstack(tables) if tables else np.zeros((0, first.shape[0]))).astype(f32)
            self.offsets = np.asarray(offsets, "int64")
            self.layers = [(w.T.astype(f32), b.astype(f32), relu) for w, b, relu in layers]
            softplus = nn.functional.softplus
            self.mono_slope = (softplus(net.mono_slope) * 2).numpy().astype(f32)
            self.mono_center = net.mono_center.numpy().astype(f32)
            self.mono_height = softplus(net.mono_height).numpy().astype(f32)
            self.mono_linear = softplus(net.mono_linear).numpy().astype(f32)

    def __call__(self, x_num, x_cat):  # noqa: ANN001, ANN204 - numpy arrays in, float64 logits out
        import numpy as np

        x = np.asarray(x_num, "float32")
        h = x[:, self.keep] @ self.first_num
        if len(self.offsets) and len(x) < 64:  # one gather for a few rows
            h += self.first_cat[x_cat + self.offsets].sum(axis=1)
        else:  # a column at a time: no (rows x columns x width) temporary
            for i, offset in enumerate(self.offsets.tolist()):
                h += self.first_cat[x_cat[:, i] + offset]
        for k, (w, b, relu) in enumerate(self.layers):
            if k:
                h = h @ w
            h += b
            if relu:
                np.maximum(h, 0.0, out=h)
        out = h[:, 0]
        if len(self.mono):
            m = x[:, self.mono]
            steps = 0.5 + 0.5 * np.tanh(0.5 * self.mono_slope * (m[:, :, None] - self.mono_center))  # sigmoid
            out = out + (steps * self.mono_height).sum(axis=(1, 2)) + m @ self.mono_linear
        return out.astype("float64")
