"""Tree-path attributions (Saabas): a fast, exactly additive split of a booster's margin by feature, for serving.

For one tree, every node's value is the mean of its leaves' outputs weighted by their training hessian (XGBoost's
cover, LightGBM's leaf weight); a row's path from the root to its leaf changes that value at each split, and each
change is credited to the split's feature. Summed over the trees, base + contributions = the booster's raw margin,
exactly, as for tree SHAP. Unlike tree SHAP, the attribution depends only on the leaf each tree sends the row to, so
it is precomputed once per leaf: explaining a row costs a leaf lookup (models/forest.py's compiled walk, equal to
the boosters' `pred_leaf`) and one gather and sum. Tree SHAP also weighs the splits a row did not take, which makes
it the better attribution and 25x the cost here; serving offers both (see docs/serving.md for how often their top
features agree).
"""

from __future__ import annotations

import numpy as np


class PathTables:
    """Per-leaf contribution rows for all trees of one booster, and the booster's base margin."""

    def __init__(self, table: np.ndarray, lookup: np.ndarray, base: float, values: np.ndarray, bias: float) -> None:
        self.table = table        # (all leaves, features): a leaf's path contributions
        self.lookup = lookup      # (trees, max node id + 1): row of `table` for (tree, leaf id from pred_leaf)
        self.base = base          # bias + sum of the trees' root values
        self.values = values      # (all leaves,): each leaf's output, as the booster stores it
        self.bias = bias          # the booster's base margin (XGBoost's base score; 0 for LightGBM)

    def contributions(self, leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows x features) contributions and the base per row, from `pred_leaf` output (rows x trees)."""
        return self.explain(leaves)[:2]

    def margin(self, leaves: np.ndarray) -> np.ndarray:
        """The booster's raw margin per row: its bias plus the outputs of the leaves in `leaves` (rows x trees)."""
        leaves = np.asarray(leaves, "int64").reshape(len(leaves), -1)
        return self.bias + self.values[self.lookup[np.arange(leaves.shape[1]), leaves]].sum(axis=1)

    def explain(self, leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Contributions, base and the booster's raw margin per row (bias + the leaves' outputs), from one leaf
        lookup: serving needs no second prediction call for the margin."""
        leaves = np.asarray(leaves, "int64").reshape(len(leaves), -1)
        rows = self.lookup[np.arange(leaves.shape[1]), leaves]
        margin = self.bias + self.values[rows].sum(axis=1)
        return self.table[rows].sum(axis=1), np.full(len(leaves), self.base), margin


def _tables(trees: list[tuple[int, dict]], n_features: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """trees: per tree (root id, {node id: (children or None, feature index, leaf value, hessian weight)})."""
    rows, keys, leaf_values, roots = [], [], [], 0.0
    max_node = max(max(nodes) for _, nodes in trees)
    for t, (root, nodes) in enumerate(trees):
        value: dict[int, float] = {}

        def mean(node: int) -> tuple[float, float]:
            children, _, leaf, weight = nodes[node]  # noqa: B023 - used within this iteration
            if children is None:
                value[node] = leaf  # noqa: B023
                return leaf * weight, weight
            parts = [mean(c) for c in children]
            total = sum(w for _, w in parts)
            value[node] = sum(s for s, _ in parts) / total if total > 0 else 0.0  # noqa: B023
            return value[node] * total, total  # noqa: B023

        mean(root)
        roots += value[root]
        stack = [(root, np.zeros(n_features))]
        while stack:
            node, acc = stack.pop()
            children, feature, _, _ = nodes[node]
            if children is None:
                rows.append(acc)
                keys.append((t, node))
                leaf_values.append(value[node])
                continue
            for c in children:
                step = acc.copy()
                step[feature] += value[c] - value[node]
                stack.append((c, step))
    table = np.vstack(rows) if rows else np.zeros((0, n_features))
    lookup = np.zeros((len(trees), max_node + 1), "int64")
    for i, (t, node) in enumerate(keys):
        lookup[t, node] = i
    return table, lookup, roots, np.asarray(leaf_values, "float64")


def xgboost_tables(booster, feature_names: list[str], probe: np.ndarray) -> PathTables:  # noqa: ANN001
    """Tables for an XGBoost booster; `probe` (rows x features, the booster's input) fixes its bias term."""
    import xgboost as xgb

    index = {name: j for j, name in enumerate(feature_names)}
    frame = booster.trees_to_dataframe()
    trees: list[tuple[int, dict]] = []
    for _, g in frame.groupby("Tree", sort=True):
        nodes = {}
        for node, feat, yes, no, gain, cover in zip(g["Node"], g["Feature"], g["Yes"], g["No"], g["Gain"],
                                                    g["Cover"], strict=True):
            if feat == "Leaf":
                nodes[int(node)] = (None, -1, float(gain), float(cover))
            else:
                kids = (int(str(yes).split("-")[1]), int(str(no).split("-")[1]))
                nodes[int(node)] = (kids, index[feat], 0.0, float(cover))
        trees.append((0, nodes))
    table, lookup, roots, values = _tables(trees, len(feature_names))
    matrix = xgb.DMatrix(probe, feature_names=booster.feature_names, feature_types=booster.feature_types,
                         enable_categorical=True)
    leaves = booster.predict(matrix, pred_leaf=True).reshape(len(probe), -1)
    margin = booster.predict(matrix, output_margin=True)
    leaf_sum = np.array([sum(trees[t][1][int(n)][2] for t, n in enumerate(row)) for row in leaves])
    bias = float(np.median(margin - leaf_sum))  # XGBoost's base score as a margin: the same for every row
    return PathTables(table, lookup, bias + roots, values, bias)


def lightgbm_tables(booster, n_features: int) -> PathTables:  # noqa: ANN001
    """Tables for a LightGBM booster (its raw score is the sum of its leaves; no separate bias)."""
    dump = booster.dump_model()
    trees: list[tuple[int, dict]] = []
    for info in dump["tree_info"]:
        nodes: dict = {}
        root = _lgb_nodes(info["tree_structure"], nodes, info["num_leaves"])
        trees.append((root, nodes))
    table, lookup, roots, values = _tables(trees, n_features)
    return PathTables(table, lookup, roots, values, 0.0)


def _lgb_nodes(node: dict, nodes: dict, num_leaves: int) -> int:
    """Number LightGBM's nodes: leaves keep their leaf_index (what pred_leaf returns), splits follow them."""
    if "leaf_index" in node or "split_index" not in node:
        idx = int(node.get("leaf_index", 0))
        nodes[idx] = (None, -1, float(node["leaf_value"]), float(node.get("leaf_weight", node.get("leaf_count", 1))))
        return idx
    left = _lgb_nodes(node["left_child"], nodes, num_leaves)
    right = _lgb_nodes(node["right_child"], nodes, num_leaves)
    idx = num_leaves + int(node["split_index"])
    nodes[idx] = ((left, right), int(node["split_feature"]), 0.0, float(node.get("internal_weight", 1)))
    return idx

