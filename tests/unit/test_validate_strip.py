"""`stripped` skips the strip only when nothing would change: it equals `str.strip` for every kind of whitespace."""

from __future__ import annotations

import pandas as pd

from pipelines.validate import stripped


def test_stripped_equals_str_strip_at_every_whitespace_python_knows() -> None:
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    for ch in spaces:  # one value with it at an end, the rest clean: the column must still be stripped
        for value in (f"{ch}a", f"a{ch}", f"a{ch}b"):
            col = pd.Series(["x", "y", value])
            assert stripped(col).tolist() == col.astype(str).str.strip().tolist(), repr(ch)
    clean = pd.Series(["a", "b c", None, "ünï"])
    assert stripped(clean).tolist() == ["a", "b c", "None", "ünï"]  # as astype(str), nothing stripped
