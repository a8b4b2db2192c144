"""Train / validation / test split: by time when the rows' times differ, else stratified by label.

Both are deterministic functions of the data (no random state): the stratified split orders each class by a hash
of the lead id, so retraining on the same labels gives the same held-out leads, which is what lets
`leadscore promote` compare two versions on data neither was fitted on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    method: str  # "time" or "stratified"

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def _hash_rank(ids: pd.Series) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "big") for v in ids],
                    dtype=np.uint64)


def split_frame(frame: pd.DataFrame, label: str = "label", valid: float = 0.2, test: float = 0.2,
                time_column: str = "event_timestamp") -> Split:
    """Newest `test` share for testing and the `valid` share before it for validation when times vary; otherwise
    the same shares taken per class (stratified), leads ordered by a hash of their id."""
    if not 0 < valid < 1 or not 0 < test < 1 or valid + test >= 1:
        raise ValueError(f"valid={valid} and test={test} must be shares between 0 and 1 that leave rows to train on")
    frame = frame.reset_index(drop=True)
    n = len(frame)
    if n < 50:
        raise ValueError(f"only {n} labelled rows: too few to train, validate and test a model (need at least 50)")
    if frame[label].nunique() < 2:
        raise ValueError(f"every row has label {frame[label].iloc[0]}: training needs both converted and not "
                         "converted leads")
    times = pd.to_datetime(frame[time_column], utc=True) if time_column in frame else None
    if times is not None and times.nunique() > 1 and times.value_counts().iloc[0] < (1 - valid - test) * n:
        order = np.lexsort((frame["lead_id"].astype(str).to_numpy(), times.to_numpy()))
        n_test, n_valid = int(round(n * test)), int(round(n * valid))
        idx = frame.index[order]
        parts = idx[: n - n_test - n_valid], idx[n - n_test - n_valid: n - n_test], idx[n - n_test:]
        method = "time"
    else:
        parts_list: list[list] = [[], [], []]
        for _, group in frame.groupby(label, sort=True):
            ranked = group.index[np.argsort(_hash_rank(group["lead_id"]), kind="stable")]
            n_test, n_valid = int(round(len(group) * test)), int(round(len(group) * valid))
            parts_list[2].extend(ranked[:n_test])
            parts_list[1].extend(ranked[n_test:n_test + n_valid])
            parts_list[0].extend(ranked[n_test + n_valid:])
        parts = tuple(frame.index[frame.index.isin(p)] for p in parts_list)
        method = "stratified"
    return Split(frame.loc[parts[0]], frame.loc[parts[1]], frame.loc[parts[2]], method)
