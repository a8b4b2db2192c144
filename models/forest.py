"""The boosters' leaf lookup (`pred_leaf`) for serving, compiled: no DMatrix, no call into either library.

Serving asks each booster for the leaf every tree sends each lead to: the leaves give both the margin and the path
explanation (models/paths.py). For a handful of leads the libraries' own calls are mostly fixed cost (XGBoost's
DMatrix, thread setup, each predictor's dispatch): 285 us for 6 leads through XGBoost on this project's machine,
20 us through this walk of the same 140 trees. The walk is compiled by numba (which comes with shap) on first use;
without numba the same walk runs as numpy operations, one tree level per step.

The trees are read from each booster's own model dump and walked with its own rules:
- XGBoost (src/predictor/predict_fn.h, common/categorical.h), on float32 values as it compares them: a missing value
  (NaN) takes the node's default child; a number goes left when x < split; a category goes right when it is in
  the node's set, left otherwise (not in the set, negative, past the set's range).
- LightGBM (include/LightGBM/tree.h, c_api.cpp), on float64, a value within 1e-35 of 0 read as 0 (LightGBM reads
  dense rows as sparse ones): by the node's missing type, NaN takes the default child
  ("NaN"), or counts as 0 ("None"), or counts as 0 and 0 takes the default child ("Zero"); a number goes left
  when x <= threshold; a category goes left when int(x) is in the node's set, right otherwise (NaN, negative).
Nodes are renumbered so each right child directly follows its left child: the next node is `left + go_right`, and
a leaf points to itself. tests/unit/test_forest.py holds the leaves equal to both libraries' `pred_leaf`,
categorical, missing and on-threshold values included.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

NAN_DEFAULT, NAN_IS_ZERO, ZERO_DEFAULT = 0, 1, 2  # what a node does with a missing value
LIGHTGBM_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold
LIGHTGBM_MISSING = {"NaN": NAN_DEFAULT, "None": NAN_IS_ZERO, "Zero": ZERO_DEFAULT}
# a tree as (root, children(node) -> (left, right) or None for a leaf, split(node) -> (feature, threshold,
# default goes right, missing kind, categories or None), leaf id(node))
Tree = tuple[object, Callable, Callable, Callable]


class Forest:
    """All trees of one booster as flat node arrays; `leaves(X)` is the booster's `pred_leaf`."""

    def __init__(self, trees: list[Tree], strict: bool, set_goes_right: bool, dtype: str) -> None:
        self.strict = strict                  # left when x < threshold (XGBoost), else when x <= it (LightGBM)
        self.set_goes_right = set_goes_right  # where a category in the node's set goes
        self.dtype = dtype                    # the precision the booster compares in
        feat, thr, first, default_right, missing, orig, cat_rows, cat_sets = [], [], [], [], [], [], [], []
        roots, depth = [], 0
        for root, children, split, leaf_id in trees:
            base = len(feat)
            roots.append(base)
            order, levels = _breadth_first(root, children)
            depth = max(depth, levels)
            position = {id(node): base + k for k, node in enumerate(order)}
            for node in order:
                kids = children(node)
                if kids is None:  # a leaf points to itself: further steps keep the row there
                    feat.append(0)
                    thr.append(np.nan)
                    first.append(position[id(node)])
                    default_right.append(False)
                    missing.append(NAN_DEFAULT)
                    cat_rows.append(0)
                    orig.append(leaf_id(node))
                    continue
                f, t, right, miss, cats = split(node)
                feat.append(f)
                thr.append(t)
                first.append(position[id(kids[0])])
                default_right.append(right)
                missing.append(miss)
                if cats is not None:
                    cat_sets.append(np.asarray(cats, "int64"))
                cat_rows.append(len(cat_sets) if cats is not None else 0)
                orig.append(-1)
        self.n_trees, self.depth = len(trees), depth
        self.roots = np.asarray(roots, "int64")
        self.feat = np.asarray(feat, "int64")
        self.thr = np.asarray(thr, dtype).astype("float64")  # exact: a float32 threshold stays what it was
        self.first = np.asarray(first, "int64")
        self.default_right = np.asarray(default_right, bool)
        self.missing = np.asarray(missing, "int8")
        self.orig = np.asarray(orig, "int32")  # the booster's own leaf id, what pred_leaf returns
        self.cat_rows = np.asarray(cat_rows, "int64")
        self.cat_width = max((int(s.max()) + 1 for s in cat_sets if len(s)), default=1)
        self.cat_table = np.zeros((len(cat_sets) + 1, self.cat_width), bool)  # row 0: not a categorical node
        for k, members in enumerate(cat_sets, start=1):
            self.cat_table[k, members[members >= 0]] = True

    @classmethod
    def from_xgboost(cls, booster) -> Forest:  # noqa: ANN001 - xgboost.Booster
        model = json.loads(bytes(booster.save_raw("json")))["learner"]["gradient_booster"]["model"]
        return cls([_xgboost_tree(t) for t in model["trees"]], strict=True, set_goes_right=True, dtype="float32")

    @classmethod
    def from_lightgbm(cls, booster) -> Forest:  # noqa: ANN001 - lightgbm.Booster
        dump = booster.dump_model()
        return cls([_lightgbm_tree(t["tree_structure"]) for t in dump["tree_info"]], strict=False,
                   set_goes_right=False, dtype="float64")

    def _input(self, X: np.ndarray) -> np.ndarray:
        """X as float64 holding the values the booster compares: XGBoost rounds its input to float32; LightGBM
        reads a dense row as sparse, so a value within its zero threshold (1e-35f) is read as 0."""
        X = np.array(np.asarray(X, self.dtype), dtype="float64", order="C")
        if not self.strict:
            X[np.abs(X) <= LIGHTGBM_ZERO] = 0.0
        return X

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """(rows x trees) leaf ids, as the booster's `predict(..., pred_leaf=True)` gives them."""
        walk = _compiled()
        if walk is None:
            return self.leaves_numpy(X)
        X = self._input(X)
        out = np.empty((X.shape[0], self.n_trees), "int32")
        walk(X, self.roots, self.feat, self.thr, self.first, self.default_right, self.missing, self.cat_rows,
             self.cat_table, self.strict, self.set_goes_right, self.orig, out)
        return out

    def leaves_numpy(self, X: np.ndarray) -> np.ndarray:
        """The same walk as numpy operations over all (row, tree) pairs at once, one tree level per step."""
        X = self._input(X)
        rows, width = X.shape
        flat = X.ravel()
        node = np.tile(self.roots, rows)
        offset = np.repeat(np.arange(rows, dtype="int64") * width, self.n_trees)
        for _ in range(self.depth):
            x = flat[offset + self.feat[node]]
            nan, miss, default = np.isnan(x), self.missing[node], self.default_right[node]
            x = np.where(nan & (miss != NAN_DEFAULT), 0.0, x)
            go = x >= self.thr[node] if self.strict else x > self.thr[node]  # False for NaN and at a leaf
            go = np.where((miss == ZERO_DEFAULT) & (x == 0.0), default, go)
            go = np.where(nan & (miss == NAN_DEFAULT), default, go)
            cat = self.cat_rows[node] > 0
            if cat.any():
                raw = flat[offset + self.feat[node]]
                code = np.trunc(np.nan_to_num(raw, nan=-1.0))
                bad = np.isnan(raw) | (raw < 0 if self.strict else code < 0) | (code >= self.cat_width)
                found = self.cat_table[self.cat_rows[node], np.where(bad, 0, code).astype("int64")] & ~bad
                in_cat = found if self.set_goes_right else ~found
                nan_cat = default if self.set_goes_right else True  # XGBoost: default child; LightGBM: right
                go = np.where(cat, np.where(np.isnan(raw), nan_cat, in_cat), go)
            node = self.first[node] + go
        return self.orig[node].reshape(rows, self.n_trees)


def _breadth_first(root: object, children: Callable) -> tuple[list, int]:
    """Nodes in breadth-first order with siblings side by side, and the tree's depth."""
    order, level, depth = [root], [root], 0
    while level:
        nxt = [kid for node in level for kid in (children(node) or ())]
        order += nxt
        level, depth = nxt, depth + (1 if nxt else 0)
    return order, depth


def _xgboost_tree(tree: dict) -> Tree:
    left, right = tree["left_children"], tree["right_children"]
    split_type = tree.get("split_type") or [0] * len(left)
    cats = {n: tree["categories"][s:s + k] for n, s, k in
            zip(tree.get("categories_nodes", []), tree.get("categories_segments", []),
                tree.get("categories_sizes", []), strict=True)}
    nodes = [_Node(k) for k in range(len(left))]

    def children(node: _Node) -> tuple | None:
        return None if left[node.k] == -1 else (nodes[left[node.k]], nodes[right[node.k]])

    def split(node: _Node) -> tuple:
        k = node.k
        return (tree["split_indices"][k], tree["split_conditions"][k], not tree["default_left"][k], NAN_DEFAULT,
                cats.get(k, []) if split_type[k] == 1 else None)

    return nodes[0], children, split, lambda node: node.k


def _lightgbm_tree(root: dict) -> Tree:
    def children(node: dict) -> tuple | None:
        return (node["left_child"], node["right_child"]) if "split_index" in node else None

    def split(node: dict) -> tuple:
        categorical = node["decision_type"] == "=="
        cats = [int(c) for c in str(node["threshold"]).split("||")] if categorical else None
        return (node["split_feature"], 0.0 if categorical else node["threshold"], not node["default_left"],
                LIGHTGBM_MISSING[node.get("missing_type", "None")], cats)

    return root, children, split, lambda node: int(node.get("leaf_index", 0))


class _Node:
    __slots__ = ("k",)

    def __init__(self, k: int) -> None:
        self.k = k


_KERNEL: dict[str, object] = {}


def _compiled():  # noqa: ANN202 - a numba dispatcher, or None without numba
    """The walk compiled by numba on first use (about half a second), or None where numba is not installed."""
    if "walk" not in _KERNEL:
        try:
            import numba
        except ImportError:  # pragma: no cover - numba comes with shap; the numpy walk gives the same leaves
            _KERNEL["walk"] = None
            return None

        @numba.njit(nogil=True, cache=False)
        def walk(X, roots, feat, thr, first, default_right, missing, cat_rows, cat_table, strict,  # noqa: ANN001, ANN202
                 set_goes_right, orig, out):
            width = cat_table.shape[1]
            for t in range(roots.shape[0]):  # tree by tree: its nodes stay in cache across the rows
                for i in range(X.shape[0]):
                    node = roots[t]
                    while first[node] != node:
                        x = X[i, feat[node]]
                        if cat_rows[node] > 0:
                            if np.isnan(x):
                                right = default_right[node] if set_goes_right else True
                            else:
                                bad = x < 0 if strict else int(x) < 0
                                found = not bad and int(x) < width and cat_table[cat_rows[node], int(x)]
                                right = found if set_goes_right else not found
                        else:
                            kind = missing[node]
                            if np.isnan(x) and kind == 0:
                                right = default_right[node]
                            else:
                                if np.isnan(x):
                                    x = 0.0
                                if kind == 2 and x == 0.0:  # within the zero threshold: made 0 by _input
                                    right = default_right[node]
                                else:
                                    right = x >= thr[node] if strict else x > thr[node]
                        node = first[node] + (1 if right else 0)
                    out[i, t] = orig[node]

        _KERNEL["walk"] = walk
    return _KERNEL["walk"]
