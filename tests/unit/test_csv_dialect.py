"""CSV as CRMs export it: separator, quote, encoding and decimal mark detected; a wrong one named in one line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

import pipelines.csv_read as csv_read
from models.data import frame_from_file
from pipelines.csv_read import first_bad_byte, read_table, resolve_dialect
from pipelines.spec import CsvSpec, SpecError, load_spec

ROWS = [["id", "name", "balance", "won"], ["L1", "Amélie", "1,5", "1"], ["L2", "Zoë", "2500,75", "0"],
        ["L3", "Bob", "-3,25", "1"]]


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _spec(tmp_path: Path, csv_block: str = "") -> Path:
    path = tmp_path / "crm.yaml"
    path.write_text(f"""
name: crm
description: d
owner: o
{csv_block}
entity: {{column: id}}
event_timestamp: {{default: 2024-01-01T00:00:00Z}}
label: {{column: won}}
features:
  - {{column: name, name: name, type: string}}
  - {{column: balance, name: balance, type: float}}
""")
    return path


def _lines(rows: list[list[str]], sep: str) -> str:
    return "".join(sep.join(r) + "\r\n" for r in rows)


@pytest.mark.parametrize(("sep", "decimal"), [(";", ","), ("\t", ","), ("|", ",")])
def test_separator_and_decimal_comma_are_detected(tmp_path: Path, sep: str, decimal: str) -> None:
    path = _write(tmp_path, "crm.csv", _lines(ROWS, sep))
    dialect = resolve_dialect(path)
    assert (dialect.separator, dialect.decimal, dialect.encoding) == (sep, decimal, "utf-8")
    frame = frame_from_file(path, load_spec(_spec(tmp_path)))
    assert frame["balance"].tolist() == [1.5, 2500.75, -3.25]
    assert frame["name"].tolist() == ["Amélie", "Zoë", "Bob"]


def test_comma_separated_numbers_keep_the_decimal_point(tmp_path: Path) -> None:
    rows = [ROWS[0], ["L1", "A", "1.5", "1"], ["L2", "B", '"2,500.75"', "0"]]
    path = _write(tmp_path, "crm.csv", _lines(rows, ","))
    dialect = resolve_dialect(path)
    assert (dialect.separator, dialect.decimal) == (",", ".")
    frame = frame_from_file(path, load_spec(_spec(tmp_path, "csv: {thousands: ','}")))
    assert frame["balance"].tolist() == [1.5, 2500.75]


def test_thousands_dots_with_a_decimal_comma(tmp_path: Path) -> None:
    rows = [ROWS[0], ["L1", "A", "1.234,5", "1"], ["L2", "B", "12,25", "0"]]
    path = _write(tmp_path, "crm.csv", _lines(rows, ";"))
    assert (resolve_dialect(path).decimal, resolve_dialect(path).thousands) == (",", ".")
    assert frame_from_file(path, load_spec(_spec(tmp_path)))["balance"].tolist() == [1234.5, 12.25]


def test_a_decimal_comma_read_with_a_point_is_rejected_with_the_fix(tmp_path: Path) -> None:
    from pipelines.validate import check_chunk

    path = _write(tmp_path, "crm.csv", _lines(ROWS, ";"))
    spec = load_spec(_spec(tmp_path, "csv: {decimal: '.'}"))
    raw, dialect = read_table(path, spec.csv)
    raw.index = range(1, len(raw) + 1)
    checked = check_chunk(raw, spec, 1, b"k" * 32, dialect=dialect)
    assert len(checked.features) == 0
    assert "'1,5' is not a number" in checked.rejects["reason"].iloc[0]
    assert 'csv: {decimal: ","}' in checked.rejects["reason"].iloc[0]


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    text = "id,name,balance,won\r\nL1,Amélie,1.5,1\r\nL2,Zoë,2500.75,0\r\nL3,Bob,-3.25,1\r\n"
    path = _write(tmp_path, "crm.csv", text, encoding="utf-8-sig")
    frame, dialect = read_table(path)
    assert dialect.encoding == "utf-8-sig" and "byte-order mark" in dialect.describe()
    assert list(frame.columns)[0] == "id"
    assert frame_from_file(path, load_spec(_spec(tmp_path)))["lead_id"].tolist() == ["L1", "L2", "L3"]


def test_a_byte_order_mark_read_as_cp1252_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "crm.csv", "id,name,balance,won\nL1,A,1.5,1\n", encoding="utf-8-sig")
    with pytest.raises(SpecError, match=r"names column\(s\) \['id'\] .* UTF-8 byte-order mark, read as part of the "
                       r"first column under encoding cp1252: set `csv: \{encoding: utf-8-sig\}`"):
        frame_from_file(path, load_spec(_spec(tmp_path, "csv: {encoding: cp1252}")))


def test_cp1252_bytes_are_detected_and_decoded(tmp_path: Path) -> None:
    rows = [ROWS[0], ["L1", "Amélie", "1,5", "1"], ["L2", "Prix 5€", "2,5", "0"]]
    path = _write(tmp_path, "crm.csv", _lines(rows, ";"), encoding="cp1252")
    dialect = resolve_dialect(path)
    assert dialect.encoding == "cp1252"
    assert "cp1252 (detected: byte 0xe9 on line 2 is not UTF-8" in dialect.describe()
    assert frame_from_file(path, load_spec(_spec(tmp_path)))["name"].tolist() == ["Amélie", "Prix 5€"]


def test_bytes_cp1252_cannot_read_fall_back_to_latin1(tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_bytes(b"id,name\nL1,a\x81b\n")  # 0x81 is undefined in cp1252
    frame, dialect = read_table(path)
    assert dialect.encoding == "latin-1" and frame["name"].tolist() == ["a\x81b"]


def test_an_encoding_the_spec_sets_that_does_not_fit_names_the_line_and_byte(tmp_path: Path) -> None:
    rows = [ROWS[0], ["L1", "Bob", "1,5", "1"], ["L2", "Amélie", "2,5", "0"]]
    path = _write(tmp_path, "crm.csv", _lines(rows, ";"), encoding="cp1252")
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(SpecError) as err:
        frame_from_file(path, load_spec(_spec(tmp_path, "csv: {encoding: utf-8}")))
    message = str(err.value)
    assert f"crm.csv: line 3 (byte offset {offset}) has byte 0xe9, which is not utf-8" in message
    assert "looks cp1252" in message and "\n" not in message


def test_a_character_split_across_read_blocks_is_not_an_error(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    path = _write(tmp_path, "crm.csv", "id,name\n" + "".join(f"L{i},é€😀\n" for i in range(50)))
    monkeypatch.setattr(csv_read, "BLOCK_BYTES", 7)  # every multi-byte character gets cut somewhere
    assert first_bad_byte(path, "utf-8") is None
    path.write_bytes(path.read_bytes() + b"L99,\xff\n")
    line, _, byte = first_bad_byte(path, "utf-8")
    assert (line, byte) == (52, 0xFF)


def test_single_quotes_are_detected_and_protect_the_separator(tmp_path: Path) -> None:
    path = _write(tmp_path, "crm.csv", "id;name;balance;won\nL1;'Rao; Asha';'1,5';1\nL2;'Iyer; K';'2';0\n")
    frame, dialect = read_table(path)
    assert (dialect.separator, dialect.quote) == (";", "'")
    assert frame["name"].tolist() == ["Rao; Asha", "Iyer; K"]


def test_double_quotes_protect_the_separator(tmp_path: Path) -> None:
    path = _write(tmp_path, "crm.csv", 'id,name,balance,won\nL1,"Rao, Asha",1.5,1\nL2,"Iyer, K",2,0\n')
    frame, dialect = read_table(path)
    assert (dialect.separator, dialect.quote) == (",", '"')
    assert frame["name"].tolist() == ["Rao, Asha", "Iyer, K"]


def test_gzipped_exports_are_detected_too(tmp_path: Path) -> None:
    path = tmp_path / "crm.csv.gz"
    path.write_bytes(gzip.compress(_lines(ROWS, ";").encode("cp1252")))
    frame, dialect = read_table(path)
    assert (dialect.separator, dialect.encoding) == (";", "cp1252") and frame["name"][1] == "Zoë"


def test_the_spec_wins_over_detection(tmp_path: Path) -> None:
    path = _write(tmp_path, "crm.csv", _lines(ROWS, "|"))
    dialect = resolve_dialect(path, CsvSpec(separator="|", encoding="utf-8", decimal=","))
    assert dialect.describe().startswith("separator '|', quote '\"' (detected), encoding utf-8, decimal ','")


def test_a_wrong_separator_names_the_cause_in_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "crm.csv", "id;\"name\";balance;won\nL1;\"A\";1,5;1\n")
    with pytest.raises(SpecError) as err:
        frame_from_file(path, load_spec(_spec(tmp_path, "csv: {separator: ','}")))
    message = str(err.value)
    assert message.startswith("spec 'crm' names column(s) ['balance', 'id', 'name', 'won'] that crm.csv lacks; "
                              "its header parsed as 1 column 'id;\"name\";balance;won' with separator ','")
    assert "the file looks ';'-separated: set `csv: {separator: \";\"}` in the spec" in message
    assert "\n" not in message


def test_a_misspelt_column_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "crm.csv", "id,Name,balance,won\nL1,A,1.5,1\n")
    with pytest.raises(SpecError, match=r"'name' -> the file's 'Name'"):
        frame_from_file(path, load_spec(_spec(tmp_path)))


def test_a_row_with_too_many_fields_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "crm.csv", "id,name,balance,won\nL1,A,1.5,1\nL2,B,2,0,extra\n")
    with pytest.raises(SpecError, match=r"crm.csv: line 3 has 5 fields where the header has 4"):
        read_table(path)


def test_a_first_row_longer_than_the_header_is_refused_not_shifted(tmp_path: Path) -> None:
    path = _write(tmp_path, "crm.csv", "id,name,balance,won\nL1,A,1,5,1\nL2,B,2,5,0\n")  # 1,5 unquoted
    with pytest.raises(SpecError, match=r"crm.csv: the first data rows have more fields than the header"):
        read_table(path)


def test_ingest_and_training_frames_share_one_reader() -> None:
    import models.data
    import pipelines.ingest

    assert pipelines.ingest.read_chunks is csv_read.read_chunks
    assert models.data.read_table is csv_read.read_table


def _export_with_bad_rows(tmp_path: Path, bad: int, rows: int = 300) -> Path:
    """A UTF-8 export (accented names) in which `bad` rows hold a byte UTF-8 cannot read (0xff)."""
    body = [b"id;name;balance;won"]
    for i in range(rows):
        name = "Amélie".encode() if i >= bad else b"Am\xfflie"
        body.append(b"L%d;%s;%d,5;%d" % (i, name, i, i % 2))
    path = tmp_path / "crm.csv"
    path.write_bytes(b"\r\n".join(body) + b"\r\n")
    return path


@pytest.mark.parametrize("csv_block", ["", "csv: {encoding: utf-8}"])
def test_a_few_unreadable_rows_are_rejected_one_by_one_not_the_whole_file(tmp_path: Path, csv_block: str) -> None:
    from pipelines.csv_read import read_chunks
    from pipelines.validate import check_chunk

    path = _export_with_bad_rows(tmp_path, bad=2)
    spec = load_spec(_spec(tmp_path, csv_block))
    dialect = resolve_dialect(path, spec.csv)
    assert (dialect.encoding, dialect.bad_lines) == ("utf-8", 2)
    assert "2 line(s) with bytes that are not utf-8 (their rows rejected)" in dialect.describe()
    (chunk, _), = read_chunks(path, 1000, dialect)
    checked = check_chunk(chunk, spec, 1, b"k" * 32, dialect=dialect)
    assert checked.rejects["row_number"].tolist() == [1, 2]
    assert all(r.startswith("bytes that are not utf-8 in column 'name'") for r in checked.rejects["reason"])
    assert len(checked.features) == 298 and set(checked.features["name"]) == {"Amélie"}


def test_many_unreadable_rows_mean_another_encoding_not_rejects(tmp_path: Path) -> None:
    path = _export_with_bad_rows(tmp_path, bad=30)  # 10 % of the rows: the file is not UTF-8
    dialect = resolve_dialect(path)
    assert dialect.encoding != "utf-8" and dialect.bad_lines == 0
    with pytest.raises(SpecError, match="line 2 .* has byte 0xff, which is not utf-8"):
        resolve_dialect(path, load_spec(_spec(tmp_path, "csv: {encoding: utf-8}")).csv)
