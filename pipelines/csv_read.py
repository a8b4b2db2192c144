"""Read what CRMs export: one reader for ingest and training frames, its CSV dialect detected from the file.

A spec's `csv:` block may set `separator`, `quote`, `encoding`, `decimal` and `thousands`; whatever it leaves out is
detected: the encoding from the bytes (a byte-order mark, else UTF-8 if every byte of the file is valid UTF-8, else
cp1252, else latin-1), the separator and quote by `csv.Sniffer` over the first 64 KB (candidates `,;\\t|`), checked
against how consistently each candidate splits the sample, and the decimal mark (`,` when the separator is not `,`
and the sample's numbers are written with a comma). Every column is read as text; validate.py parses numbers with
the decimal mark. A header that does not hold the spec's columns, or a byte the encoding cannot read, is refused
with one line that names the cause and the fix.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from pipelines.spec import CsvSpec, SpecError

SEPARATORS = ",;\t|"
QUOTES = "\"'"
SNIFF_BYTES = 64 * 1024
BLOCK_BYTES = 1 << 20
PARQUET = (".parquet", ".pq")
TEXT = (".csv", ".txt", ".tsv", ".gz")
COMMA_NUMBER = re.compile(r"^[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+$")
DOT_NUMBER = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d*)\.\d+$")


@dataclass(frozen=True)
class Dialect:
    """How a CSV is written, and which of its settings were detected rather than set in the spec."""

    separator: str = ","
    quote: str = '"'
    encoding: str = "utf-8"
    decimal: str = "."
    thousands: str | None = None
    detected: dict[str, str] = field(default_factory=dict)  # setting -> why it was chosen
    bad_lines: int = 0  # lines whose bytes are not `encoding`: read with U+FFFD in their place, their rows rejected

    def describe(self) -> str:
        """One phrase, e.g. `separator ';' (detected), quote '"', encoding cp1252 (detected: not valid UTF-8)`."""
        parts = []
        for name in ("separator", "quote", "encoding", "decimal", "thousands"):
            value = getattr(self, name)
            if value is None:
                continue
            shown = value if name == "encoding" else repr(value)
            why = self.detected.get(name)
            parts.append(f"{name} {shown}" + (f" (detected{': ' + why if why else ''})" if name in self.detected
                                              else ""))
        if self.bad_lines:
            parts.append(f"{self.bad_lines} line(s) with bytes that are not {self.encoding} (their rows rejected)")
        return ", ".join(parts)


def _open(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(decompressed stream, the raw file under it, whose position says how far the read has come)."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    return (gzip.GzipFile(fileobj=raw) if path.suffix.lower() == ".gz" else raw), raw


def first_bad_byte(path: Path, encoding: str) -> tuple[int, int, int] | None:
    """(line, byte offset, byte) of the first byte `encoding` cannot decode in the file, or None if it all decodes."""
    base, lines, carry = 0, 1, b""
    stream, raw = _open(path)
    with raw, stream:
        while True:
            block = stream.read(BLOCK_BYTES)
            data = carry + block
            if not data:
                return None
            try:
                data.decode(encoding)
                good, carry = len(data), b""
            except UnicodeDecodeError as exc:
                if block and exc.end == len(data) and "end of data" in exc.reason:  # a character cut by the block
                    good, carry = exc.start, data[exc.start:]
                else:
                    return lines + data.count(b"\n", 0, exc.start), base + exc.start, data[exc.start]
            lines += data.count(b"\n", 0, good)
            base += good
            if not block:
                return None


BAD_LINE_SHARE = 0.01  # at most this share of a file's lines may hold bytes its encoding cannot read (rows rejected)


def scan_lines(path: Path, encoding: str, limit: int | None = None) -> tuple[int, int, bool]:
    """(lines whose bytes `encoding` cannot decode, stopping after `limit`; lines read; whether the lines that do
    decode hold any non-ASCII byte). For encodings in which a newline byte is always a newline (not UTF-16)."""
    bad, lines, non_ascii, carry = 0, 0, False, b""
    stream, raw = _open(path)
    with raw, stream:
        while True:
            block = stream.read(BLOCK_BYTES)
            data = carry + block
            if not data:
                break
            cut = data.rfind(b"\n") + 1 if block else len(data)
            part, carry = data[:cut], data[cut:]
            try:
                part.decode(encoding)
                non_ascii = non_ascii or not part.isascii()
            except UnicodeDecodeError:
                for line in part.split(b"\n"):
                    try:
                        line.decode(encoding)
                        non_ascii = non_ascii or not line.isascii()
                    except UnicodeDecodeError:
                        bad += 1
                        if limit is not None and bad > limit:
                            return bad, lines, non_ascii
            lines += part.count(b"\n")
            if not block:
                lines += bool(part) and not part.endswith(b"\n")
                break
    return bad, lines, non_ascii


def few_bad_lines(path: Path, encoding: str) -> int:
    """How many lines `encoding` cannot read, if they are few: at most BAD_LINE_SHARE of the file's lines, and the
    other lines hold non-ASCII text that does decode (so the encoding is really the file's, not a guess that only
    ASCII fits); else 0. Those rows are rejected one by one instead of the whole file."""
    if encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
        return 0
    bad, lines, non_ascii = scan_lines(path, encoding)
    few = 0 < bad <= max(1, int(lines * BAD_LINE_SHARE)) and non_ascii
    return bad if few else 0


def detect_encoding(path: Path) -> tuple[str, str]:
    """(encoding, why): a byte-order mark, else UTF-8 if the whole file decodes, else cp1252, else latin-1."""
    stream, raw = _open(path)
    with raw, stream:
        head = stream.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "a UTF-8 byte-order mark"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "a UTF-16 byte-order mark"
    bad = first_bad_byte(path, "utf-8")
    if bad is None:
        return "utf-8", ""
    where = f"byte 0x{bad[2]:02x} on line {bad[0]} is not UTF-8"
    few = few_bad_lines(path, "utf-8")
    if few:
        return "utf-8", f"{where}, as on {few - 1} other line(s); the rest is UTF-8 text"
    if first_bad_byte(path, "cp1252") is None:
        return "cp1252", f"{where}; every byte is cp1252 (Windows Western European)"
    return "latin-1", f"{where}, nor is every byte cp1252"


def sample_text(path: Path, encoding: str) -> str:
    """The first ~64 KB as text, cut after the last whole line."""
    stream, raw = _open(path)
    with raw, stream:
        data = stream.read(SNIFF_BYTES)
    text = data.decode(encoding, errors="replace").lstrip("\ufeff")
    if len(data) == SNIFF_BYTES and "\n" in text:
        text = text[: text.rfind("\n") + 1]
    return text


def sample_rows(text: str, separator: str, quote: str, limit: int = 500) -> list[list[str]]:
    rows = []
    for row in csv.reader(io.StringIO(text), delimiter=separator, quotechar=quote):
        if row:
            rows.append(row)
        if len(rows) >= limit:
            break
    return rows


def guess_quote(text: str, separator: str) -> str:
    """The character that encloses whole fields in the sample (`"` unless only `'` does)."""
    sep = re.escape(separator)
    counts = {q: len(re.findall(rf"(?:^|{sep}){re.escape(q)}[^{re.escape(q)}\n]*{re.escape(q)}(?={sep}|\r?$)",
                                text, flags=re.M)) for q in QUOTES}
    return "'" if counts["'"] > counts['"'] else '"'


def _split_score(text: str, separator: str, quote: str) -> tuple[float, int]:
    """(share of sample rows with as many fields as the header, the header's field count)."""
    rows = sample_rows(text, separator, quote)
    if not rows:
        return 0.0, 0
    width = len(rows[0])
    return sum(len(r) == width for r in rows[1:]) / max(len(rows) - 1, 1), width


def detect_separator(text: str, quote: str | None = None) -> tuple[str, str]:
    """(separator, quote) by csv.Sniffer over the sample, checked against how evenly each candidate splits it."""
    try:
        sniffed = csv.Sniffer().sniff(text, delimiters=SEPARATORS)
        pick = sniffed.delimiter
    except csv.Error:
        pick = None
    scores = {}
    for sep in SEPARATORS:
        same, width = _split_score(text, sep, quote or guess_quote(text, sep))
        if width > 1:
            scores[sep] = (round(same, 2), sep == pick, width)
    sep = max(scores, key=scores.get) if scores else (pick or ",")
    return sep, quote or guess_quote(text, sep)


def detect_decimal(rows: list[list[str]], separator: str) -> tuple[str, str | None]:
    """(decimal mark, thousands separator): ',' when the separator is not ',' and numbers are written '1,5'."""
    if separator == ",":
        return ".", None
    comma = dot = grouped = 0
    for row in rows[1:]:
        for value in row:
            value = value.strip()
            if COMMA_NUMBER.match(value):
                comma += 1
                grouped += "." in value
            elif DOT_NUMBER.match(value):
                dot += 1
    if comma > dot:
        return ",", ("." if grouped else None)
    return ".", None


def resolve_dialect(path: Path, given: CsvSpec | None = None) -> Dialect:
    """The spec's settings, the rest detected; an encoding the spec sets must read the whole file."""
    path = Path(path)
    given = given or CsvSpec()
    detected: dict[str, str] = {}
    bad_lines = 0
    if given.encoding:
        encoding = given.encoding
        bad = first_bad_byte(path, encoding)
        bad_lines = few_bad_lines(path, encoding) if bad is not None else 0
        if bad is not None and not bad_lines:
            line, offset, byte = bad
            guess, _ = detect_encoding(path)
            raise SpecError(f"{path.name}: line {line} (byte offset {offset}) has byte 0x{byte:02x}, which is not "
                            f"{encoding} as the spec's `csv: {{encoding: {encoding}}}` says; the file looks {guess}: "
                            f"set `csv: {{encoding: {guess}}}` or leave `encoding` out to detect it")
    else:
        encoding, why = detect_encoding(path)
        detected["encoding"] = why
        bad_lines = few_bad_lines(path, encoding) if encoding == "utf-8" and why else 0
    text = sample_text(path, encoding)
    if given.separator:
        separator, quote = given.separator, given.quote or guess_quote(text, given.separator)
    else:
        separator, quote = detect_separator(text, given.quote)
        detected["separator"] = ""
    if not given.quote:
        detected["quote"] = ""
    decimal, thousands = given.decimal, given.thousands
    if decimal is None:
        decimal, guessed = detect_decimal(sample_rows(text, separator, quote), separator)
        detected["decimal"] = ""
        if thousands is None and guessed:
            thousands = guessed
            detected["thousands"] = ""
    return Dialect(separator, quote, encoding, decimal, thousands, detected, bad_lines)


def _parser_error(path: Path, exc: Exception, dialect: Dialect) -> SpecError:
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if match:
        want, line, saw = match.groups()
        return SpecError(f"{path.name}: line {line} has {saw} fields where the header has {want} (read with "
                         f"{dialect.describe()}): quote fields that contain the separator, or set the right one "
                         f"in the spec's `csv:` block")
    return SpecError(f"{path.name} cannot be read as CSV ({dialect.describe()}): {str(exc).strip()}")


def read_chunks(path: Path, chunk_rows: int, dialect: Dialect | None = None,
                nrows: int | None = None) -> Iterator[tuple[pd.DataFrame, int]]:
    """Yield (chunk with every column as text, bytes of the file consumed so far); CSV (.gz too) or Parquet."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PARQUET:
        yield from _parquet_chunks(path, chunk_rows, nrows)
        return
    if suffix not in TEXT:
        raise SpecError(f"{path.name}: unsupported file type {suffix!r}; give a .csv (optionally .gz) or .parquet file")
    dialect = dialect or resolve_dialect(path)
    stream, raw = _open(path)
    with raw, stream, warnings.catch_warnings():
        # index_col=False: a first row longer than the header must not silently become the index (pandas' default);
        # pandas warns instead, and that warning is an error here
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            reader = pd.read_csv(stream, sep=dialect.separator, quotechar=dialect.quote, encoding=dialect.encoding,
                                 dtype=str, keep_default_na=False, chunksize=chunk_rows, nrows=nrows, index_col=False,
                                 # the few lines found unreadable: U+FFFD in place of their bad bytes, rows rejected
                                 encoding_errors="replace" if dialect.bad_lines else "strict")
            for chunk in reader:
                yield chunk, raw.tell()
        except pd.errors.ParserWarning:
            raise SpecError(f"{path.name}: the first data rows have more fields than the header (read with "
                            f"{dialect.describe()}): quote fields that contain the separator, or set the right one "
                            "in the spec's `csv:` block") from None
        except UnicodeDecodeError:
            line, offset, byte = first_bad_byte(path, dialect.encoding) or (0, 0, 0)
            raise SpecError(f"{path.name}: line {line} (byte offset {offset}) has byte 0x{byte:02x}, which is not "
                            f"{dialect.encoding}: set the file's encoding in the spec, e.g. "
                            "`csv: {encoding: cp1252}`") from None
        except pd.errors.ParserError as exc:
            raise _parser_error(path, exc, dialect) from None
        except pd.errors.EmptyDataError:
            raise SpecError(f"{path.name} is empty: it has no header line") from None


def _parquet_chunks(path: Path, chunk_rows: int, nrows: int | None) -> Iterator[tuple[pd.DataFrame, int]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    per_row = path.stat().st_size / max(pf.metadata.num_rows, 1)
    done = 0
    for batch in pf.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas().astype(object)
        frame = frame.where(frame.notna(), None).map(lambda v: None if v is None else str(v))
        if nrows is not None:
            frame = frame.iloc[: max(nrows - done, 0)]
        done += len(frame)
        yield frame, int(done * per_row)
        if nrows is not None and done >= nrows:
            return


def read_header(path: Path, dialect: Dialect) -> list[str]:
    """The file's column names, read as its rows will be."""
    path = Path(path)
    if path.suffix.lower() in PARQUET:
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    stream, raw = _open(path)
    with raw, stream:
        try:
            return list(pd.read_csv(stream, sep=dialect.separator, quotechar=dialect.quote, encoding=dialect.encoding,
                                    dtype=str, nrows=0, index_col=False,
                                    encoding_errors="replace" if dialect.bad_lines else "strict").columns)
        except pd.errors.EmptyDataError:
            raise SpecError(f"{path.name} is empty: it has no header line") from None


def read_table(path: Path, given: CsvSpec | None = None, nrows: int | None = None,
               dialect: Dialect | None = None) -> tuple[pd.DataFrame, Dialect]:
    """The whole file (or its first `nrows` rows) as one frame of text, and the dialect it was read with."""
    path = Path(path)
    if dialect is None:
        dialect = resolve_dialect(path, given) if path.suffix.lower() not in PARQUET else Dialect()
    chunks = [c for c, _ in read_chunks(path, 100_000, dialect, nrows)]
    return (pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()), dialect

