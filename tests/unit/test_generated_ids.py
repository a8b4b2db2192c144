"""Generated lead ids for files without one: stable across reads, distinct for duplicates, pseudonymous."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from pipelines.csv_read import read_chunks, resolve_dialect
from pipelines.generated_ids import RowIds
from pipelines.spec import SpecError, load_spec
from pipelines.validate import check_chunk

KEY = b"k" * 32
TEXT = ("name;phone;age;won\nAsha Rao;98100 00001;34;1\nK Iyer;98100 00002;41;0\nAsha Rao;98100 00001;34;1\n"
        "Asha Rao;98100 00001;34;1\nM Das;98100 00003;29;0\n")


def _spec(tmp_path: Path, generate: str, extra: str = "") -> Path:
    path = tmp_path / "gen.yaml"
    path.write_text(f"""
name: gen_leads
description: d
owner: o
entity: {{generate: {generate}{extra}}}
event_timestamp: {{default: 2024-01-01T00:00:00Z}}
label: {{column: won}}
pii: [{{column: name, action: drop}}, {{column: phone, action: hash}}]
features: [{{column: age, name: age, type: int}}]
""")
    return path


def _ids(path: Path, spec_path: Path, chunk_rows: int, key: bytes = KEY) -> list[str]:
    """Ids as ingest makes them: chunk by chunk, one RowIds for the file, PII hashed after the ids are made."""
    spec = load_spec(spec_path)
    ids, out, first = RowIds(spec, key), [], 1
    for chunk, _ in read_chunks(path, chunk_rows, resolve_dialect(path)):
        chunk.index = pd.RangeIndex(first, first + len(chunk))
        out += check_chunk(chunk, spec, first, key, ids=ids).features["lead_id"].tolist()
        first += len(chunk)
    return out


def test_row_hash_ids_are_stable_whatever_the_chunking_and_keep_duplicates_apart(tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(TEXT)
    spec = _spec(tmp_path, "row_hash")
    once, again = _ids(path, spec, 2), _ids(path, spec, 50)
    assert once == again and len(set(once)) == 5
    assert all(re.fullmatch(r"rh-[0-9a-f]{32}(-\d+)?", i) for i in once)  # a digest: no value of the row shows
    assert once[2] == once[0] + "-2" and once[3] == once[0] + "-3"  # identical rows: occurrence counter
    assert _ids(path, spec, 50, key=b"x" * 32) != once, "without the key the ids cannot be recomputed"


def test_row_hash_ids_follow_the_row_not_its_position(tmp_path: Path) -> None:
    path, moved = tmp_path / "crm.csv", tmp_path / "moved.csv"
    path.write_text(TEXT)
    lines = TEXT.splitlines(keepends=True)
    moved.write_text(lines[0] + lines[5] + "".join(lines[1:5]))  # the last lead moved to the top
    spec = _spec(tmp_path, "row_hash")
    assert sorted(_ids(moved, spec, 2)) == sorted(_ids(path, spec, 3))


def test_row_number_ids_are_the_dataset_and_the_data_row(tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(TEXT)
    spec = _spec(tmp_path, "row_number")
    assert _ids(path, spec, 2) == _ids(path, spec, 10) == [f"gen_leads-{n}" for n in range(1, 6)]


def test_a_generated_id_needs_no_entity_column(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, "row_hash"))
    assert spec.known_columns() == {"name", "phone", "age", "won"}


@pytest.mark.parametrize(("entity", "message"), [
    ("{column: id, generate: row_hash}", "exactly one of `column`"),
    ("{}", "exactly one of `column`"),
    ("{generate: uuid}", "entity.generate"),
    ("{generate: row_hash, hash: true}", "generated ids are already pseudonymous"),
])
def test_the_entity_takes_a_column_or_a_generator(tmp_path: Path, entity: str, message: str) -> None:
    path = _spec(tmp_path, "row_hash")
    path.write_text(path.read_text().replace("entity: {generate: row_hash}", f"entity: {entity}"))
    with pytest.raises(SpecError, match=message):
        load_spec(path)
