"""Read CSV, Parquet and JSON scene manifests into one shape: a table of string cells.

Every cell becomes text (empty = not set) so one set of parsers validates all formats. Rows keep the
label the user sees: CSV line number (header = line 1), ``row N`` for Parquet (0-based index), a JSON
path for scene files.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Iterator, Sequence

from assetgen.manifest._fields import KNOWN, REQUIRED, TEXT_COLUMNS, BadValue, suggest_column
from assetgen.hints import closest
from assetgen.names import scene_slug, text_problem

EMPTY_HINT = f"expected a header line with at least {', '.join(REQUIRED)}"


@dataclass
class Issue:
    """Problem found while reading (converted to ValidationIssue by the caller)."""

    row: int | str | None
    column: str | None
    value: str | None
    message: str


@dataclass
class Column:
    """One column's cells, factorized: row i's text is ``values[codes[i]]`` (``values[i]`` when ``codes`` is None).

    Each distinct text is held once and parsed once, however many rows repeat it; ``values`` holds only texts
    that some row has.
    """

    values: list[str]
    codes: list[int] | None = None

    def cells(self) -> list[str]:
        """The text of every row's cell (the distinct texts shared, not copied)."""
        if self.codes is None:
            return self.values
        values = self.values
        return [values[k] for k in self.codes]

    @classmethod
    def of(cls, cells: Iterable[str]) -> "Column":
        index: dict[str, int] = {}
        codes = [index.setdefault(c, len(index)) for c in cells]
        return cls(list(index), codes)


class RowLabels(Sequence):
    """Parquet rows' labels ``row N`` (0-based), made when asked for."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return f"row {i % self.n}"


@dataclass
class Table:
    """A manifest as text cells by column; ``labels[i]`` is row i's label as the user sees it (CSV line number,
    ``row N`` for Parquet, a JSON path). Every row has a cell (maybe empty) in every column."""

    file: str
    folder: Path
    columns: list[str]
    labels: Sequence[int | str]
    data: dict[str, Column]
    header_row: int | str | None = None
    display: dict[str, str] = field(default_factory=dict)  # column -> name the user wrote (JSON keys)

    @classmethod
    def from_rows(cls, file: str, folder: Path, columns: list[str], rows: list[tuple[int | str, dict[str, str]]],
                  header_row: int | str | None = None, display: dict[str, str] | None = None) -> "Table":
        data = {c: Column.of([cells[c] for _, cells in rows]) for c in columns}
        return cls(file, folder, columns, [label for label, _ in rows], data, header_row, display or {})

    def __len__(self) -> int:
        return len(self.labels)

    def row(self, i: int) -> dict[str, str]:
        """Row i as column -> text, in column order."""
        out = {}
        for c in self.columns:
            col = self.data[c]
            out[c] = col.values[i if col.codes is None else col.codes[i]]
        return out

    @property
    def rows(self) -> list[tuple[int | str, dict[str, str]]]:
        """(label, cells) of every row (built on each call: the bulk paths read ``data``)."""
        return [(label, self.row(i)) for i, label in enumerate(self.labels)]


class ReadError(Exception):
    def __init__(self, issues: list[Issue]):
        self.issues = issues


def too_many_rows(rows: int, max_rows: int) -> Issue:
    """The cap issue for a file with more data rows than the cap (each row makes at least one asset)."""
    return Issue(None, None, None,
                 f"file has more than {max_rows} rows, and each row makes at least one asset; the cap is "
                 f"{max_rows} assets per manifest: split the file or raise the cap (--max-assets)"
                 if rows < 0 else
                 f"file has {rows} rows, and each row makes at least one asset; the cap is {max_rows} assets "
                 "per manifest: split the file or raise the cap (--max-assets)")  # fmt: skip


def read_table(path: Path, max_rows: int | None = None) -> Table:
    """The file as a table of text cells; raises ReadError.

    ``max_rows``: a file with more data rows is refused (as a cap issue) before its rows are parsed.
    """
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ReadError([Issue(None, None, None, "file not found")])
    if suffix == ".csv":
        return _read_csv(path, max_rows)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path, max_rows)
    if suffix == ".json":
        return _read_json(path, max_rows)
    raise ReadError([Issue(None, None, suffix, "unsupported manifest type; expected .csv, .parquet or .json")])


# --- CSV -----------------------------------------------------------------------------------------


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ReadError(
            [Issue(line, None, f"0x{data[exc.start]:02x}", "file is not UTF-8 text; save it as UTF-8 (CSV UTF-8)")]
        ) from None


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _lines(text: str) -> Iterator[str]:
    """Lines of ``text`` with their endings, lazily (as a file opened with ``newline=""`` gives them to csv)."""
    return (m.group() for m in _LINE.finditer(text))


BULK_CSV_BYTES = 1 << 20  # CSV files from this size are parsed by pyarrow when it reads them as the csv module does


def _read_csv(path: Path, max_rows: int | None = None) -> Table:
    """CSV via the csv module: all cells stay strings and each record keeps its real line number.

    Reading stops at the first data row beyond ``max_rows``, so a huge file is refused without parsing it.
    A large file is read by pyarrow's CSV parser instead when :func:`_read_csv_bulk` can show that it yields
    the same cells and line numbers; anything unusual is left to the csv module and its exact messages.
    """
    if path.stat().st_size >= BULK_CSV_BYTES:
        table = _read_csv_bulk(path, max_rows)
        if table is not None:
            return table
    text = _decode(path)
    if not text.strip():
        raise ReadError([Issue(None, None, None, f"file is empty; {EMPTY_HINT}")])
    reader = csv.reader(_lines(text))
    issues: list[Issue] = []
    try:
        header = [h.strip() for h in next(reader)]
        _check_separator(header)
        _check_header(header, 1, issues)
        rows: list[tuple[int | str, dict[str, str]]] = []
        width = len(header)
        end = reader.line_num
        for cells in reader:
            start, end = end + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue  # blank line
            if max_rows is not None and len(rows) + len(issues) >= max_rows:
                raise ReadError([too_many_rows(-1, max_rows)])
            if len(cells) != width:
                issues.append(Issue(start, None, None, f"row has {len(cells)} cells but the header has {width}"
                                    + _split_number_hint(cells, width)))  # fmt: skip
                continue
            rows.append((start, {h: c.strip() for h, c in zip(header, cells)}))
    except csv.Error as exc:
        raise ReadError([*issues, Issue(reader.line_num, None, None, f"unreadable CSV: {exc}")]) from None
    if issues:
        raise ReadError(issues)
    if not rows:
        raise ReadError([Issue(1, None, None, "file has a header but no data rows")])
    return Table.from_rows(str(path), path.parent, header, rows, header_row=1)


_EDGE_SPACE = re.compile(r"^[^\S\n]|[^\S\n]$", re.MULTILINE)  # what str.strip would remove, at a line's ends


def _read_csv_bulk(path: Path, max_rows: int | None) -> Table | None:
    """The table :func:`_read_csv` would read, parsed by pyarrow (multi-threaded C++, no object per cell), or
    None when the file is anything but plain: a header with quotes, separator or name problems, NUL bytes,
    text that is not UTF-8, a row of another width, a blank line or a record spanning lines (its line numbers
    would shift), a cell past the csv module's field limit, or more lines than ``max_rows`` allows.

    pyarrow's quoting rules are the csv module's defaults (``"`` quotes, ``""`` escapes one, a quote inside
    an unquoted cell is text), so cells are equal; every record on its own line makes data row i line i + 2.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):  # one UTF-8 BOM, as the utf-8-sig codec drops it
        data = data[3:]
    if b"\0" in data:
        return None
    crlf = data.count(b"\r\n")
    lines = data.count(b"\n") + data.count(b"\r") - crlf + (0 if data.endswith((b"\n", b"\r")) else 1)
    if max_rows is not None and lines - 1 > max_rows:
        return None
    first = len(data)
    for end in (b"\n", b"\r"):
        at = data.find(end)
        first = at if 0 <= at < first else first
    try:
        header_line = data[:first].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if '"' in header_line or not header_line.strip():
        return None
    header = [h.strip() for h in next(csv.reader([header_line]))]
    issues: list[Issue] = []
    _check_header(header, 1, issues)
    if issues or len(header) < 2:
        return None
    names = [f"c{i}" for i in range(len(header))]
    try:
        table = pcsv.read_csv(
            pa.py_buffer(data),
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pcsv.ParseOptions(delimiter=",", quote_char='"', double_quote=True, escape_char=False,
                                            newlines_in_values=True, ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}, check_utf8=True,
                                                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowException, ValueError):
        return None
    del data
    n = table.num_rows
    if n == 0 or n != lines - 1:
        return None
    limit = csv.field_size_limit()
    data_by_name: dict[str, Column] = {}
    blank, blank_possible = None, True  # rows whose cells are all empty (the csv module skips them as blank)
    for name, chunked in zip(header, table.columns):
        encoded = pc.dictionary_encode(chunked.combine_chunks())
        raw = encoded.dictionary.to_pylist()
        if max(map(len, raw)) > limit:
            return None
        index: dict[str, int] = {}
        if _EDGE_SPACE.search("\n".join(raw)):  # (no cell holds a line break here: its record would span lines)
            remap = [index.setdefault(v.strip(), len(index)) for v in raw]
        else:  # no cell to strip: the distinct texts stay distinct
            index = dict(zip(raw, range(len(raw))))
            remap = range(len(raw))
        empty = index.get("")
        if empty is None:
            blank_possible = False
        elif blank_possible:
            is_empty = pc.equal(pc.take(pa.array(list(remap), pa.int32()), encoded.indices), empty)
            blank = is_empty if blank is None else pc.and_(blank, is_empty)
        if len(index) == n:
            codes = None  # every row its own text, in row order
        else:
            codes = encoded.indices.to_pylist()
            if len(index) != len(remap):
                codes = [remap[k] for k in codes]
        data_by_name[name] = Column(list(index), codes)
    if blank_possible and blank is not None and pc.any(blank).as_py():
        return None
    return Table(str(path), path.parent, header, range(2, n + 2), data_by_name, header_row=1)


def _check_separator(header: list[str]) -> None:
    """Refuse a header written with another separator (``;`` or tab, as spreadsheets in many locales save)."""
    if len(header) > 1:
        return
    for sep, name in ((";", "semicolons"), ("\t", "tabs")):
        parts = [p.strip().lower() for p in header[0].split(sep)]
        if len(parts) > 1 and sum(p in KNOWN for p in parts) >= 2:
            raise ReadError([Issue(1, None, header[0][:80],
                                   f"the header is separated by {name}, not commas; assetgen reads comma-separated "
                                   "CSV: export it with ',' as separator (and '.' as decimal point)")])  # fmt: skip


_INT = re.compile(r"^[+-]?\d+$")
_DIGITS = re.compile(r"^\d+$")


def _split_number_hint(cells: list[str], width: int) -> str:
    """Hint for a row with extra cells when an unquoted decimal comma (``-14,5``) split a number in two."""
    if len(cells) <= width:
        return ""
    for a, b in zip(cells, cells[1:]):
        if _INT.match(a.strip()) and _DIGITS.match(b):
            return (f" (is '{a.strip()},{b}' a number with a decimal comma? write {a.strip()}.{b} with a point; "
                    "a comma separates cells)")  # fmt: skip
    return ""


def _check_header(header: list[str], where: int | str | None, issues: list[Issue]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(header):
        if not name:
            issues.append(Issue(where, f"#{i + 1}", "", "empty column name in header"))
        elif name in seen:
            issues.append(Issue(where, name, name, "column appears twice in the header"))
        seen.add(name)


# --- Parquet -------------------------------------------------------------------------------------

_NUMBER_COLUMNS = KNOWN - TEXT_COLUMNS - {"loop", "loudness"}


def _dtype_ok(column: str, t) -> bool:  # t: pyarrow.DataType
    import pyarrow as pa

    text = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
    number = pa.types.is_integer(t) or pa.types.is_floating(t)
    if column in _NUMBER_COLUMNS or column == "loudness":
        return text or number
    if column == "loop":
        return text or number or pa.types.is_boolean(t)
    if column in KNOWN:
        return text
    return text or number or pa.types.is_boolean(t)  # template parameter


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value).strip()


def _read_parquet(path: Path, max_rows: int | None = None) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if max_rows is not None:  # the footer holds the row count: refuse before reading any column
            rows_in_file = pq.ParquetFile(path).metadata.num_rows
            if rows_in_file > max_rows:
                raise ReadError([too_many_rows(rows_in_file, max_rows)])
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ReadError([Issue(None, None, None, f"unreadable Parquet file: {exc}")]) from None
    header = [str(n).strip() for n in table.column_names]
    issues: list[Issue] = []
    _check_header(header, "header", issues)
    for name, col in zip(header, table.columns):
        t = col.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if not _dtype_ok(name, t):
            expected = "text" if name in KNOWN - _NUMBER_COLUMNS - {"loop", "loudness"} else "numbers or text"
            issues.append(Issue("header", name, str(col.type),
                                f"Parquet column has dtype {col.type}; expected {expected}"))
    if issues:
        raise ReadError(issues)
    if table.num_rows == 0:
        raise ReadError([Issue("header", None, None, "file has columns but no rows")])
    data = {name: _parquet_column(col) for name, col in zip(header, table.columns)}
    return Table(str(path), path.parent, header, RowLabels(table.num_rows), data, header_row="header")


def _parquet_column(col) -> Column:  # col: pyarrow.ChunkedArray
    """A Parquet column as text cells (``_cell`` of each value), each distinct value converted once."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = col.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_floating(arr.type) or pa.types.is_null(arr.type):  # -0.0 / NaN payloads: convert every value
        return Column.of([_cell(v) for v in arr.to_pylist()])
    encoded = pc.dictionary_encode(arr, null_encoding="encode")
    index: dict[str, int] = {}
    remap = [index.setdefault(_cell(v), len(index)) for v in encoded.dictionary.to_pylist()]
    codes = encoded.indices.to_pylist()
    if len(index) != len(remap):  # values with one text (" a" and "a")
        codes = [remap[k] for k in codes]
    return Column(list(index), codes)


# --- JSON scene files (the seed tutorial's format) -----------------------------------------------

# seed component key -> manifest column
_JSON_KEYS = {"type": "model", "duration": "duration_s", "weight": "gain_db", "name": "asset"}
_SEED_TYPES = {"music": "music", "audio": "sfx"}


MAX_JSON_DEPTH = 32  # a scene file needs 5 levels ({"scenes": [{"components": [{...}]}]}); json recurses per level
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_SCENE_KEYS = ("name", "components", "mix", "description")


def _check_depth(text: str) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH before parsing it (strings are skipped as whole tokens)."""
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        t = token.group()
        if t in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                line = text.count("\n", 0, token.start()) + 1
                raise ReadError([Issue(line, None, None,
                                       f"JSON nested more than {MAX_JSON_DEPTH} levels deep; a scene file needs 5 "
                                       "(an object or list per level)")])  # fmt: skip
        elif t in ("]", "}"):
            depth -= 1


def _json_cell(value: object, where: str, key: str) -> str:
    if isinstance(value, (dict, list)):
        raise BadValue(f"expected a single value, got a JSON {type(value).__name__}")
    return _cell(value)


def _weight_to_gain(value: object) -> str:
    """Seed's linear mix weight -> gain in dB (20*log10(weight))."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BadValue("expected a positive number (linear mix weight; 1.0 = 0 dB)")
    return repr(20.0 * math.log10(value))


def _read_json(path: Path, max_rows: int | None = None) -> Table:
    """Seed scene files: ``[{name, components: [{name, type, prompt, duration, temperature, weight}]}]``.

    Also accepts ``{"scenes": [...]}``. Components become layer rows of their scene; a scene's optional
    ``mix`` object (manifest columns) becomes its explicit mix row. Other keys are manifest columns.
    """
    text = _decode(path)
    if not text.strip():
        raise ReadError([Issue(None, None, None, "file is empty; expected a JSON list of scenes")])
    _check_depth(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError([Issue(exc.lineno, None, None, f"invalid JSON: {exc.msg} (column {exc.colno})")]) from None
    prefix = "scenes"
    if isinstance(data, dict) and "scenes" in data:
        data = data["scenes"]
    else:
        prefix = ""
    if not isinstance(data, list) or not data:
        raise ReadError([Issue(None, None, None, "expected a non-empty list of scenes (or {\"scenes\": [...]})")])
    issues: list[Issue] = []
    rows: list[tuple[int | str, dict[str, str]]] = []
    # name columns as the file does: seed keys (duration, type, weight) unless it uses manifest names
    written = {k for s in data if isinstance(s, dict) for c in (s.get("components") or []) if isinstance(c, dict)
               for k in c}  # fmt: skip
    for si, scene in enumerate(data):
        where = f"{prefix}[{si}]"
        problems = _scene_problems(scene, where)
        if problems:
            issues += problems
            continue
        comps = scene["components"]
        scene_name = scene_slug(scene["name"])
        for ci, comp in enumerate(comps):
            cwhere = f"{where}.components[{ci}]"
            if not isinstance(comp, dict):
                issues.append(Issue(cwhere, None, None, "component must be a JSON object"))
                continue
            row = _json_row(comp, cwhere, ci, issues)
            if row is not None:
                row["scene"] = scene_name
                row.setdefault("layer", row.get("asset", ""))
                rows.append((cwhere, row))
        mix = scene.get("mix")
        if mix is not None:
            if not isinstance(mix, dict):
                issues.append(Issue(f"{where}.mix", None, None, "\"mix\" must be a JSON object"))
                continue
            row = _json_row({"name": "mix", **mix}, f"{where}.mix", 0, issues, mix=True)
            if row is not None:
                rows.append((f"{where}.mix", {**row, "scene": scene_name, "model": "mix"}))
    if issues:
        raise ReadError(issues)
    if max_rows is not None and len(rows) > max_rows:
        raise ReadError([too_many_rows(len(rows), max_rows)])
    columns = list(dict.fromkeys([*REQUIRED, *(c for _, r in rows for c in r)]))
    rows = [(label, {c: r.get(c, "") for c in columns}) for label, r in rows]
    display = {col: key for key, col in _JSON_KEYS.items() if key != "name" and col not in written}
    return Table.from_rows(str(path), path.parent, columns, rows, header_row=None, display=display)


def _scene_problems(scene: object, where: str) -> list[Issue]:
    """What is wrong with one scene object itself (its components are checked as rows)."""
    if not isinstance(scene, dict) or not isinstance(scene.get("name"), str) or not scene["name"].strip():
        return [Issue(where, "name", None, "scene needs a \"name\" (text)")]
    found = []
    for key in scene:
        if key not in _SCENE_KEYS:
            hint = closest(key, _SCENE_KEYS)
            found.append(Issue(where, key, None,
                               "unknown scene key" + (f" (did you mean '{hint}'?)" if hint else "")
                               + f"; a scene has {', '.join(_SCENE_KEYS)}; columns go into its components or "
                               "its \"mix\" object"))  # fmt: skip
    comps = scene.get("components")
    if not isinstance(comps, list) or not comps:
        found.append(Issue(where, "components", None, "scene needs a non-empty \"components\" list"))
    for key in ("name", "description"):  # the name becomes a folder only after scene_slug: check the text
        value = scene.get(key)
        problem = None if value is None else text_problem(value) if isinstance(value, str) else "is not text"
        if problem:
            found.append(Issue(where, key, json.dumps(value), f"{key} {problem}"))
    return found


def _json_row(comp: dict, where: str, index: int, issues: list[Issue], mix: bool = False) -> dict[str, str] | None:
    row: dict[str, str] = {}
    ok = True
    for key, value in comp.items():
        column = _JSON_KEYS.get(key, key)
        try:
            if key == "weight":
                row[column] = _weight_to_gain(value)
            elif key == "type" and isinstance(value, str):
                row[column] = _SEED_TYPES.get(value.strip(), value.strip())
            else:
                row[column] = _json_cell(value, where, key)
        except BadValue as exc:
            issues.append(Issue(where, key, json.dumps(value), str(exc)))
            ok = False
    if not ok:
        return None
    if not row.get("asset"):
        row["asset"] = f"{row.get('model') or 'component'}_{index + 1}"
    return row
