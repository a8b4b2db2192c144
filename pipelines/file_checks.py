"""A file checked against the spec that names it: its header holds the spec's columns (else one line says why
not: a wrong separator, a near-miss spelling), and the label file of `label.matches` is found and read."""

from __future__ import annotations

import codecs
import difflib
from pathlib import Path

from pipelines.csv_read import (
    PARQUET,
    SEPARATORS,
    Dialect,
    guess_quote,
    read_header,
    read_table,
    resolve_dialect,
    sample_rows,
    sample_text,
)
from pipelines.spec import DatasetSpec, SpecError


def open_checked(path: Path, spec: DatasetSpec) -> tuple[Dialect, list[str]]:
    """(dialect, header) of a file whose header holds every column the spec names; else SpecError saying why."""
    path = Path(path)
    dialect = Dialect() if path.suffix.lower() in PARQUET else resolve_dialect(path, spec.csv)
    columns = read_header(path, dialect)
    check_header(path, columns, spec.known_columns() - set(spec.ignore), f"spec '{spec.name}'", dialect)
    return dialect, columns


def check_header(path: Path, columns: list[str], wanted: set[str], owner: str, dialect: Dialect) -> None:
    """Refuse a header that lacks `wanted` columns with one line naming the likely cause and the fix."""
    missing = sorted(wanted - set(columns))
    if not missing:
        return
    shown = (repr(columns[0][:60] + ("..." if len(columns[0]) > 60 else "")) if len(columns) == 1
             else f"{columns[:8]}" + ("..." if len(columns) > 8 else ""))
    line = (f"{owner} names column(s) {missing[:6]}{'...' if len(missing) > 6 else ''} that {path.name} lacks; "
            f"its header parsed as {len(columns)} column{'s' if len(columns) != 1 else ''} {shown} with separator "
            f"{dialect.separator!r}")
    hint = _separator_hint(path, wanted, columns, dialect) or _spelling_hint(missing, columns)
    if columns and columns[0].startswith(("\ufeff", codecs.BOM_UTF8.decode("latin-1"))):
        hint = (f"the file starts with a UTF-8 byte-order mark, read as part of the first column under encoding "
                f"{dialect.encoding}: set `csv: {{encoding: utf-8-sig}}` or leave `encoding` out to detect it")
    raise SpecError(f"{line}; {hint}" if hint else line)


def _separator_hint(path: Path, wanted: set[str], columns: list[str], dialect: Dialect) -> str:
    if path.suffix.lower() in PARQUET:
        return ""
    header = sample_text(path, dialect.encoding).splitlines()[:1]
    best, found = None, len(wanted & set(columns))
    for sep in SEPARATORS:
        if sep == dialect.separator or not header:
            continue
        rows = sample_rows(header[0], sep, guess_quote(header[0], sep), limit=1)
        hits = len(wanted & {c.strip() for c in rows[0]}) if rows else 0
        if hits > found:
            best, found = sep, hits
    if best is None:
        return ""
    fix = f"set `csv: {{separator: {best!r}}}` in the spec".replace("'", '"')
    if "separator" not in dialect.detected:
        return f"the spec sets separator {dialect.separator!r} but the file looks {best!r}-separated: {fix}"
    return f"the file looks {best!r}-separated: {fix}"


def _spelling_hint(missing: list[str], columns: list[str]) -> str:
    pairs = []
    for name in missing:
        close = difflib.get_close_matches(name, columns, n=1, cutoff=0.75) or [
            c for c in columns if c.strip().lower() == name.strip().lower()]
        if close:
            pairs.append(f"{name!r} -> the file's {close[0]!r}")
    if pairs:
        return "names that differ only a little: " + ", ".join(pairs[:4]) + "; correct the spec or the header"
    return f"the file's columns are {columns[:12]}" + ("..." if len(columns) > 12 else "")


def label_matches(spec: DatasetSpec, data_path: Path) -> frozenset[str] | None:
    """The values of `label.matches` (positive labels), read from the file named relative to `data_path`'s folder."""
    matches = spec.label.matches if spec.label else None
    if matches is None:
        return None
    other = Path(matches.file).expanduser()
    other = other if other.is_absolute() else Path(data_path).resolve().parent / other
    if not other.is_file():
        raise SpecError(f"spec '{spec.name}': `label.matches.file` {matches.file!r} does not exist (looked for "
                        f"{other}; a relative path is read from the folder of the file being loaded)")
    dialect = Dialect() if other.suffix.lower() in PARQUET else resolve_dialect(other, matches.csv)
    check_header(other, read_header(other, dialect), {matches.column}, f"spec '{spec.name}' label.matches", dialect)
    frame, _ = read_table(other, dialect=dialect)
    values = frame[matches.column].astype(str).str.strip()
    return frozenset(values[~values.isin(set(spec.null_values))])
