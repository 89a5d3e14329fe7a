"""Manifests -> validated, expanded ``AssetSpec`` list.

``load_manifests`` reads CSV / Parquet / JSON scene files, checks every cell, fills prompt templates,
expands sweeps (``calm|tense`` cells, cartesian product) and variants, adds scene mixes, and either
returns the specs or raises one ``ManifestError`` listing every problem in every file. Questionable but
valid input (``bpm`` without ``loop``, a sweep repeating a value) gives ``ManifestWarning``s.
Nothing here writes files; ``print_warnings`` is the one function that prints. Schema: ``manifests/README.md``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import string
import re
import sys
import time
import warnings as _warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

from assetgen.gcpause import gc_paused
from assetgen.hints import closest
from assetgen.manifest._fields import (
    KNOWN,
    MAX_DURATION_S,
    META_PREFIX,
    PARSERS,
    REQUIRED,
    BadValue,
    parse_melody,
    parse_model,
    parse_source,
    parse_text,
    suggest_column,
)
from assetgen.manifest._read import ReadError, Table, read_table, too_many_rows
from assetgen.names import MAX_NAME_LEN, RESERVED_SCENES, shorten, slug, text_problem
from assetgen.seeds import derive_seed
from assetgen.spec import (
    DEFAULT_PROMPT_S,
    DEFAULT_TTS_RATE,
    DEFAULT_TTS_VOICE,
    FILE_MODEL,
    MIX_MODEL,
    TTS_MODEL,
    AssetSpec,
    GenParams,
    PostParams,
    Source,
    bars_seconds,
)

__all__ = [
    "ManifestError",
    "ManifestWarning",
    "ValidationIssue",
    "load_manifests",
    "print_warnings",
    "DEFAULT_MAX_ASSETS",
    "META_PREFIX",
]

DEFAULT_MAX_ASSETS = 10_000
DEFAULT_MIX_ASSET = "mix"
_MAX_LISTED = 200  # issues shown by str(ManifestError); .issues has all of them
_GEN_FIELDS = ("temperature", "top_k", "top_p", "cfg_coef")
_POST_FIELDS = (
    "sample_rate", "bit_depth", "channels", "true_peak_db", "loop", "bpm", "bars", "crossfade_s", "fx",
    "gain_db", "start_s", "fade_in_s", "fade_out_s", "highpass_hz", "max_limit_db", "loudness_mode",
    "loop_tolerance_s", "qc", "loudness_tolerance_lu", "max_attempts", "duck_db", "duck_attack_s", "duck_release_s",
    "stem_set",
)  # fmt: skip
_TTS_FIELDS = ("voice", "rate")
_DUCK_FIELDS = ("duck_db", "duck_attack_s", "duck_release_s")
_SOURCE_FIELDS = ("source", "source_start_s", "source_end_s")
# a recording is read, not generated: no randomness to set, nothing to re-roll, no takes to vary
_NOT_FOR_FILE = ("temperature", "top_k", "top_p", "cfg_coef", "seed", "variants", "max_attempts", "melody",
                 *_TTS_FIELDS)
_NOT_FOR_MIX = ("temperature", "top_k", "top_p", "cfg_coef", "seed", "layer", "max_attempts", *_TTS_FIELDS,
                *_DUCK_FIELDS, *_SOURCE_FIELDS, "stem_set", "melody")


@dataclass(frozen=True)
class ValidationIssue:
    """One problem, located as the user sees it.

    ``row``: CSV line number (header = 1), ``"row N"`` (Parquet, 0-based), a JSON path, or None for the
    whole file. ``column`` and ``value`` are None when the problem is not about one cell.
    """

    file: str
    row: int | str | None
    column: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f":line {self.row}" if isinstance(self.row, int) else f":{self.row}"
        cell = ""
        if self.column is not None:
            cell = f" column '{self.column}'"
            if self.value is not None:
                cell += f" = {self.value!r}"
            cell += ":"
        return f"{where}:{cell} {self.message}"


class ManifestWarning(UserWarning):
    """Valid but probably not what was meant (``bpm`` without ``loop``, equal sweep values); located like
    ``ValidationIssue``."""

    def __init__(self, file: str, row: int | str | None, column: str | None, value: str | None, message: str):
        self.file, self.row, self.column, self.value, self.message = file, row, column, value, message
        super().__init__(str(self))

    def __str__(self) -> str:
        return str(ValidationIssue(self.file, self.row, self.column, self.value, self.message))


def print_warnings(found: Iterable[ManifestWarning], stream: IO[str] | None = None) -> None:
    """Print each warning as ``warning: <file>:<row>: column 'c' = 'v': message`` (stderr by default)."""
    stream = stream or sys.stderr
    for warning in found:
        print(f"warning: {warning}", file=stream)


class ManifestError(Exception):
    """Invalid manifests; ``.issues`` lists every problem found (all files, all rows)."""

    def __init__(self, issues: Sequence[ValidationIssue]):
        self.issues = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.issues)
        lines = [f"{n} problem{'s' if n != 1 else ''} in the manifests:"]
        lines += [f"  {i}" for i in self.issues[:_MAX_LISTED]]
        if n > _MAX_LISTED:
            lines.append(f"  ... and {n - _MAX_LISTED} more")
        return "\n".join(lines)


def load_manifests(paths: Sequence[Path | str], max_assets: int = DEFAULT_MAX_ASSETS,
                   warnings: list[ManifestWarning] | None = None,
                   timings: dict[str, float] | None = None) -> list[AssetSpec]:
    """Validate and expand manifests; raises ManifestError listing all problems, else returns the specs.

    ``max_assets``: cap on the assets one manifest may expand to (checked before expanding; a file with
    more rows than the cap is refused before its rows are parsed).
    ``warnings``: found warnings are appended to this list; without it they are issued with
    ``warnings.warn`` (category ``ManifestWarning``), so no caller loses them silently.
    ``timings``: seconds spent reading and validating rows (``validate``) and expanding them and checking the
    expanded assets across files (``expand``) are added to this dict (benchmarks/bench_plan.py reads them).
    """
    found: list[ManifestWarning] = []
    clock = {"validate": 0.0, "expand": 0.0}
    try:
        with gc_paused():
            return _load(paths, max_assets, found, clock)
    finally:
        if timings is not None:
            for phase, seconds in clock.items():
                timings[phase] = timings.get(phase, 0.0) + seconds
        if warnings is not None:
            warnings += found
        else:
            for warning in found:
                _warnings.warn(warning, stacklevel=2)


def _load(paths: Sequence[Path | str], max_assets: int, found: list[ManifestWarning],
          clock: dict[str, float]) -> list[AssetSpec]:
    issues: list[ValidationIssue] = []
    specs: list[AssetSpec] = []
    if not paths:
        raise ManifestError([ValidationIssue("(arguments)", None, None, None, "no manifest given")])
    for path in paths:
        path = Path(path)
        start = time.perf_counter()
        try:
            table = read_table(path, max_rows=max_assets)
        except ReadError as exc:
            issues += [ValidationIssue(str(path), i.row, i.column, i.value, i.message) for i in exc.issues]
            continue
        except OSError as exc:
            issues.append(ValidationIssue(str(path), None, None, None, f"cannot read file: {exc.strerror or exc}"))
            continue
        finally:
            clock["validate"] += time.perf_counter() - start
        file_specs, file_issues, file_warnings = _expand_table(table, max_assets, clock)
        specs += file_specs
        issues += file_issues
        found += file_warnings
    start = time.perf_counter()
    try:
        return _across_files(specs, issues)
    finally:
        clock["expand"] += time.perf_counter() - start


def _across_files(specs: list[AssetSpec], issues: list[ValidationIssue]) -> list[AssetSpec]:
    """Mixes, stem sets, duplicates and continuations over every file's specs; raises ManifestError."""
    # a mix row whose layers failed validation would look layer-less: only judge that on clean input
    specs, mix_issues = _add_mixes(specs, check_layerless=not issues)
    issues += mix_issues
    issues += _stem_sets(specs)
    issues += _duplicates(specs)
    if not issues:  # a base whose row failed validation would look missing
        issues += _dependencies(specs)
    if issues:
        raise ManifestError(issues)
    return specs


# --- templates -----------------------------------------------------------------------------------


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _template_fields(prompt: str) -> tuple[str, ...]:
    """Placeholder names of a prompt template, in order; raises BadValue on bad syntax."""
    if "{" not in prompt and "}" not in prompt:
        return ()
    found = _FIELD.findall(prompt)
    if len(found) == prompt.count("{") == prompt.count("}"):  # every brace in a {name}: what Formatter would find
        return tuple(dict.fromkeys(found))
    return _parsed_template_fields(prompt)


@lru_cache(maxsize=1 << 16)
def _parsed_template_fields(prompt: str) -> tuple[str, ...]:
    names = []
    try:
        parsed = list(string.Formatter().parse(prompt))
    except ValueError as exc:
        raise BadValue(f"bad template: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise BadValue(f"bad placeholder {{{name}}}: expected {{column_name}} with a column name only")
        names.append(name)
    return tuple(dict.fromkeys(names))


def _placeholders_in(table: Table) -> set[str] | None:
    """Placeholder names the file's prompts use; None when a prompt's syntax is bad (reported per row)."""
    prompts = table.data["prompt"].values if "prompt" in table.data else [""]
    block = "\n".join(prompts)
    found = _FIELD.findall(block)
    if len(found) == block.count("{") == block.count("}"):  # every brace in a {name} (see _template_fields)
        return set(found)
    used: set[str] = set()
    for prompt in prompts:
        try:
            used.update(_template_fields(prompt))
        except BadValue:
            return None
    return used


# --- one file ------------------------------------------------------------------------------------


class _Issues:
    """Collects one file's issues, called as ``issue(row, column, value, message)``, and its warnings."""

    def __init__(self, table: Table):
        self.table = table
        self.issues: list[ValidationIssue] = []
        self.warnings: list[ManifestWarning] = []

    def __call__(self, row, column, value, message) -> None:
        column = self.table.display.get(column, column) if column else column
        self.issues.append(ValidationIssue(self.table.file, row, column, value, message))

    def warn(self, row, column, value, message) -> None:
        column = self.table.display.get(column, column) if column else column
        self.warnings.append(ManifestWarning(self.table.file, row, column, value, message))


@dataclass
class _Row:
    """A validated row before expansion: options per swept column, fixed values otherwise."""

    label: int | str
    fixed: dict[str, Any]  # column -> parsed value (single option)
    text: dict[str, str]  # column -> raw text of single-option cells (for templates)
    swept: list[tuple[str, list[tuple[str, Any]]]]  # (column, [(raw, parsed), ...]) sorted by column
    template: str
    count: int


def _expand_table(table: Table, max_assets: int, clock: dict[str, float]
                  ) -> tuple[list[AssetSpec], list[ValidationIssue], list[ManifestWarning]]:
    start = time.perf_counter()
    issue = _Issues(table)
    issues = issue.issues
    if len(table) > max_assets:  # every row makes at least one asset: refuse before parsing any
        cap = too_many_rows(len(table), max_assets)
        issue(cap.row, cap.column, cap.value, cap.message)
        return [], issues, issue.warnings
    params = _check_columns(table, issue)
    if any(c not in table.columns for c in _required(table)):
        return [], issues, issue.warnings  # every row would repeat the same error
    caches: dict[str, dict[str, Any]] = {c: {} for c in table.columns}
    # per row: its _Row, None when it failed, or the _Group whose representative row stands for it
    groups = _Groups(table, params, caches) if len(table) >= BULK_ROWS else None
    parsed_rows: list[_Row | _Group | None] = []
    for i, label in enumerate(table.labels):
        group = groups.of(i) if groups is not None else None
        parsed_rows.append(group or _parse_row(table, label, table.row(i), params, caches, issue))
    counts = [r.count for r in parsed_rows if r is not None]
    total = sum(counts)
    now = time.perf_counter()
    clock["validate"] += now - start
    start = now
    try:
        if total > max_assets:
            most = max(counts)
            label = next(r.label if isinstance(r, _Row) else table.labels[i] for i, r in enumerate(parsed_rows)
                         if r is not None and r.count == most)
            issue(None, None, None,
                  f"sweeps and variants would make {total} assets (row {label} alone makes {most}); "
                  f"the cap is {max_assets} per manifest: split the sweep or raise the cap (--max-assets)")  # fmt: skip
            return [], issues, issue.warnings
        specs: list[AssetSpec] = []  # valid rows are expanded even when others failed: duplicates get reported too
        for i, row in enumerate(parsed_rows):
            if row is None:
                continue
            if isinstance(row, _Group):
                found = row.expand(i, issue)
                if found is not None:
                    specs += found
                    continue
                row = groups.parsed(i)
            specs += _expand_row(table, row, params, issue)
        return specs, issues, issue.warnings
    finally:
        clock["expand"] += time.perf_counter() - start


def _required(table: Table) -> tuple[str, ...]:
    """Required columns of ``table``: ``prompt`` and ``duration_s`` may be left out of a file whose rows are
    all recorded sources (and mixes), which need neither."""
    models = set(table.data["model"].values) if "model" in table.data else {""}
    if FILE_MODEL in models and models <= {FILE_MODEL, MIX_MODEL}:
        return tuple(c for c in REQUIRED if c not in ("prompt", "duration_s"))
    return REQUIRED


def _check_columns(table: Table, issue) -> list[str]:
    """Missing required and unknown columns; returns the other columns (template parameters, ``meta_*``).

    A column is known, a ``meta_*`` column, or a template parameter that some prompt of the file uses as
    ``{placeholder}``; anything else is an error, so that no cell is silently ignored.
    """
    for name in _required(table):
        if name not in table.columns:
            hint = next((c for c in table.columns if c not in KNOWN and suggest_column(c) == name), None)
            extra = f" (is '{hint}' a misspelling?)" if hint else ""
            issue(table.header_row, name, None, f"missing required column{extra}")
    used = _placeholders_in(table)
    # a column that a misspelt placeholder means is reported as that placeholder ("did you mean {weather}?")
    misspelt = set() if used is None else {p for p in used if p not in table.columns}
    params = []
    for column in table.columns:
        if column in KNOWN:
            continue
        if used is None or column in used or (column.startswith(META_PREFIX) and len(column) > len(META_PREFIX)) \
                or any(closest(p, [column]) for p in misspelt):
            params.append(column)
            continue
        near = suggest_column(column)
        where = table.header_row
        if where is None:  # JSON: the first object that has the key
            col = table.data[column]
            first = next((i for i, c in enumerate(col.codes or range(len(table))) if col.values[c]), None)
            where = None if first is None else table.labels[first]
        issue(where, column, None,
              "unknown column" + (f" (did you mean '{near}'?)" if near else "")
              + f"; expected a known column (manifests/README.md), a {META_PREFIX}* column for free metadata, "
              "or a template parameter that a prompt uses as {" + column + "}")  # fmt: skip
    return params


def _parse_cell(table: Table, column: str, raw: str, cache: dict[str, Any]) -> Any:
    """Parsed value of one option of a cell (cached per file and column); raises BadValue."""
    hit = cache.get(raw, cache)
    if hit is not cache:
        if isinstance(hit, BadValue):
            raise hit
        return hit
    try:
        if column == "model":
            value = parse_model(raw, table.folder)
        elif column == "source":
            value = parse_source(raw, table.folder)
        elif column == "melody":
            value = parse_melody(raw, table.folder)
        else:
            value = PARSERS[column][0](raw) if column in PARSERS else parse_text(raw)
    except BadValue as exc:
        cache[raw] = exc
        raise
    cache[raw] = value
    return value


def _options(raw: str) -> list[str]:
    parts = [p.strip() for p in raw.split("|")]
    if any(not p for p in parts):
        raise BadValue("sweep has an empty option; expected values separated by | such as calm|tense")
    return parts


def _distinct(parsed: list[tuple[str, Any]]) -> tuple[list[tuple[str, Any]], list[str]]:
    """Sweep options with equal parsed values (``1|1.0|01``) merged into the first; returns (kept, dropped raws)."""
    kept: dict[Any, tuple[str, Any]] = {}
    dropped = []
    for raw, value in parsed:
        if kept.setdefault(value, (raw, value))[0] != raw:
            dropped.append(raw)
    return list(kept.values()), dropped


def _parse_row(table: Table, label, cells: dict[str, str], params: list[str], caches, issue) -> _Row | None:
    n_before = len(issue.issues)
    fixed: dict[str, Any] = {}
    text: dict[str, str] = {}
    swept: list[tuple[str, list[tuple[str, Any]]]] = []
    is_mix = cells.get("model") == MIX_MODEL
    is_file = cells.get("model") == FILE_MODEL
    for column, raw in cells.items():
        if not raw:
            continue
        known = column in KNOWN
        sweepable = PARSERS[column][1] if known else not column.startswith(META_PREFIX)
        try:
            opts = _options(raw) if sweepable and "|" in raw else [raw]
        except BadValue as exc:
            issue(label, column, raw, str(exc))
            continue
        if known and len(opts) > 1 and column == "model" and (MIX_MODEL in opts or FILE_MODEL in opts):
            issue(label, column, raw, f"'{MIX_MODEL if MIX_MODEL in opts else FILE_MODEL}' cannot be swept with "
                  "other models")
            continue
        parsed = []
        for opt in opts:
            try:
                parsed.append((opt, _parse_cell(table, column, opt, caches[column])))
            except BadValue as exc:
                issue(label, column, opt if len(opts) > 1 else raw, str(exc))
        if len(parsed) != len(opts):
            continue
        if len(parsed) > 1:
            parsed, dropped = _distinct(parsed)
            if dropped:
                issue.warn(label, column, raw,
                           f"sweep values {', '.join(dropped)} equal {' / '.join(r for r, _ in parsed)}: "
                           "each distinct value makes one asset")  # fmt: skip
            opts = [r for r, _ in parsed]
        if len(opts) == 1:
            fixed[column] = parsed[0][1]
            text[column] = opts[0]
        else:
            swept.append((column, parsed))
    swept.sort(key=lambda s: s[0])
    variants = fixed.get("variants", 1)
    has_bars = bool(cells.get("bpm")) and bool(cells.get("bars"))
    if not is_mix and (cells.get("bpm") or cells.get("bars")) and not _may_loop(fixed, swept):
        column = "bpm" if cells.get("bpm") else "bars"
        issue.warn(label, column, cells[column],
                   "bpm/bars without loop=true: the asset is a one-shot of that length, not a loop cut on the "
                   "beat grid; set loop=true for a loop")  # fmt: skip
    for column in ("scene", "asset", "model"):
        if not cells.get(column):
            issue(label, column, "", f"{column} is required")
    if is_mix:
        for column in _NOT_FOR_MIX:
            if cells.get(column):
                issue(label, column, cells[column], "has no effect on a mix row (a mix is rendered from its layers)")
        if cells.get("prompt"):
            issue(label, "prompt", cells["prompt"], "a mix row takes no prompt; leave it empty")
        if swept or variants > 1:
            issue(label, swept[0][0] if swept else "variants", None, "a mix row cannot be swept or have variants")
    elif is_file:
        _check_file_row(label, cells, issue)
        if cells.get("layer") and swept:
            issue(label, "layer", cells["layer"],
                  "a layer row cannot be swept (its scene mix takes one take per layer); move the sweep to its own "
                  "scene")  # fmt: skip
    else:
        _check_tts_and_ducking(label, cells, issue)
        if not cells.get("prompt"):
            issue(label, "prompt", "", "prompt is required")
        if not cells.get("duration_s") and not has_bars:
            issue(label, "duration_s", "", "duration_s is required (or bpm and bars)")
        if cells.get("layer") and (swept or variants > 1):
            issue(label, "layer", cells["layer"],
                  "a layer row cannot be swept or have variants (its scene mix takes one take per layer); "
                  "move the sweep to its own scene")  # fmt: skip
    if cells.get("stem_set") and (swept or variants > 1):
        issue(label, "stem_set", cells["stem_set"],
              "a stem row cannot be swept or have variants (a set holds one take per stem); give each stem its row")
    template = cells.get("prompt", "")
    try:
        for name in _template_fields(template):
            if name not in cells:
                hint = closest(name, list(cells))
                issue(label, "prompt", template,
                      f"unknown placeholder {{{name}}}" + (f" (did you mean {{{hint}}}?)" if hint else "")
                      + f"; expected one of the columns: {', '.join(params) or '(no template columns)'}")  # fmt: skip
            elif not cells[name]:
                issue(label, name, "", f"empty, but the prompt uses {{{name}}}")
    except BadValue as exc:
        issue(label, "prompt", template, str(exc))
    if len(issue.issues) != n_before:
        return None
    count = math.prod(len(opts) for _, opts in swept) * variants
    return _Row(label, fixed, text, swept, template, count)


def _check_file_row(label, cells: dict[str, str], issue) -> None:
    """A recorded source (``model = file``): a ``source`` and no generation settings; ``prompt`` (a label) and
    ``duration_s`` (default: the segment read) are optional."""
    if not cells.get("source"):
        issue(label, "source", "", "a file row needs source: the recording's path, relative to the manifest")
    for column in _NOT_FOR_FILE:
        if cells.get(column):
            issue(label, column, cells[column],
                  "has no effect on a file row (a recording is read, not generated; a failed QC gate cannot be "
                  "re-rolled)")  # fmt: skip
    ducking = [c for c in _DUCK_FIELDS if cells.get(c)]
    if ducking and not cells.get("layer"):
        issue(label, ducking[0], cells[ducking[0]],
              "ducking turns down the other layers of a scene mix: only on a row with a layer value")


def _check_tts_and_ducking(label, cells: dict[str, str], issue) -> None:
    """Columns that only some rows use: generation settings on ``tts`` rows, ``voice``/``rate`` elsewhere,
    ducking outside a scene mix. (A swept ``model`` is checked per combination in ``_audio_params``.)"""
    model = cells.get("model", "")
    if model == TTS_MODEL:
        for column in (*_GEN_FIELDS, "variants"):
            if cells.get(column):
                issue(label, column, cells[column],
                      "has no effect on a tts row (espeak-ng speaks a line the same way every time); "
                      "use voice and rate")  # fmt: skip
    elif model and "|" not in model:
        for column in _SOURCE_FIELDS:
            if cells.get(column):
                issue(label, column, cells[column], "applies only to model file (a recorded source); leave it empty")
        for column in _TTS_FIELDS:
            if cells.get(column):
                hint = " (the delivery rate in Hz is sample_rate)" if column == "rate" else ""
                issue(label, column, cells[column], f"applies only to model tts (narration){hint}; leave it empty")
    ducking = [c for c in _DUCK_FIELDS if cells.get(c)]
    if ducking and not cells.get("layer"):
        issue(label, ducking[0], cells[ducking[0]],
              "ducking turns down the other layers of a scene mix: only on a row with a layer value")
    elif ducking and not cells.get("duck_db"):
        issue(label, ducking[0], cells[ducking[0]], "has no effect without duck_db (dB of gain reduction)")


def _may_loop(fixed: dict[str, Any], swept: list[tuple[str, list[tuple[str, Any]]]]) -> bool:
    """True when the row's ``loop`` is true (or true in one of its sweep options)."""
    if fixed.get("loop"):
        return True
    return any(value for column, opts in swept if column == "loop" for _, value in opts)


_AUDIO_COLUMNS = frozenset((*_GEN_FIELDS, *_POST_FIELDS, *_TTS_FIELDS, *_SOURCE_FIELDS, "duration_s", "loudness",
                            "model"))


def _expand_row(table: Table, row: _Row, params: list[str], issue) -> list[AssetSpec]:
    """All specs of one row: cartesian product of its sweeps, times its variants."""
    out: list[AssetSpec] = []
    columns = [c for c, _ in row.swept]
    variants = row.fixed.get("variants", 1)
    width = max(2, len(str(variants)))
    source = Source(table.file, row.label)
    scene, base = row.fixed["scene"], row.fixed["asset"]
    default_seed = row.fixed["seed"] if "seed" in row.fixed else derive_seed(scene, base)
    shared = None  # (model, gen, post) when no swept column changes them: built once per row
    if not _AUDIO_COLUMNS.intersection(columns):
        try:
            shared = _audio_params(row.fixed)
        except BadValue as exc:
            issue(row.label, exc.column, exc.value, str(exc))
            return out
    template_params = [p for p in sorted(params)
                       if (p in row.text or p in columns) and not p.startswith(META_PREFIX)]
    meta = tuple((p, " ".join(row.text[p].split()))  # whitespace collapsed, as in prompts
                 for p in sorted(params) if p.startswith(META_PREFIX) and p in row.text)
    # per option: (raw, parsed, name suffix); names are built from precomputed suffixes
    options = [[(raw, parsed, f"__{c}-{slug(raw)}") for raw, parsed in opts] for c, opts in row.swept]
    fixed = row.fixed
    for combo in itertools.product(*options):
        values, text = fixed, row.text
        if combo:
            values, text = dict(fixed), dict(text)
            for column, (raw, parsed, _) in zip(columns, combo):
                values[column] = parsed
                text[column] = raw
        try:
            model, gen, post = shared or _audio_params(values)
            prompt = _fill(row.template, text) if model != MIX_MODEL and (row.template or model != FILE_MODEL) else ""
        except BadValue as exc:
            where = ", ".join(f"{c}={o[0]}" for c, o in zip(columns, combo))
            issue(row.label, exc.column, exc.value, str(exc) + (f" (with {where})" if where else ""))
            continue
        name = shorten(base + "".join([o[2] for o in combo])) if combo else base
        spec = AssetSpec(
            scene=scene,
            asset=name,
            model=model,
            prompt=prompt,
            seed=values.get("seed", default_seed),
            gen=gen,
            post=post,
            layer=fixed.get("layer"),
            category=fixed.get("category", ""),
            tags=fixed.get("tags", ()),
            template_params=tuple([(p, text[p]) for p in template_params]),
            source=source,
            meta=meta,
        )
        if variants == 1:
            out.append(spec)
            continue
        for k in range(1, variants + 1):
            asset = shorten(f"{name}__v{k:0{width}d}")
            out.append(spec.replace(asset=asset, seed=derive_seed(spec.seed, scene, asset)))
    return out


# --- large tables: rows validated and expanded by groups -----------------------------------------

BULK_ROWS = 2000  # tables with at least this many rows are validated by groups of rows (see _Groups)
_PER_ROW = frozenset(("scene", "asset", "prompt", "layer", "category"))  # besides template and meta_* columns
_FEW_TEXTS = 64  # a column with at most this many distinct texts enters row signatures by its text
_NAME_COLUMNS = frozenset(("scene", "asset", "layer"))
# names that parse_name / parse_scene accept unchanged, without their checks (ASCII, single inner dots, no
# Windows device name before the first dot); any other name is parsed by them
_SAFE_NAME = re.compile(r"(?!(?i:con|prn|aux|nul|com[1-9]|lpt[1-9])(?:\.|\Z))[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_EMPTY, _VALID, _OTHER = 0, 1, -1  # classes of a cell in a row signature


_NOT_SAFE_CHAR = re.compile(r"[^A-Za-z0-9_.\n-]")
_BAD_DOTS = re.compile(r"^\.|\.$|\.\.", re.MULTILINE)
_DEVICE = re.compile(r"^(?:con|prn|aux|nul|com[1-9]|lpt[1-9])(?:\.|$)", re.MULTILINE | re.IGNORECASE)


def _safe_names(texts: list[str], scene: bool) -> bool:
    """Whether every non-empty text is a name ``_SAFE_NAME`` accepts (and, for scenes, not a reserved one),
    checked over all texts at once."""
    block = "\n".join(texts)
    if block.count("\n") != len(texts) - 1:  # a text holds a line break itself
        return False
    if _NOT_SAFE_CHAR.search(block) or _BAD_DOTS.search(block) or _DEVICE.search(block):
        return False
    if max(map(len, texts), default=0) > MAX_NAME_LEN:
        return False
    return not scene or not any(t.lower() in RESERVED_SCENES for t in texts)


class _Groups:
    """The rows of a large table grouped by what ``_parse_row`` can tell apart, each group checked once.

    A row's signature holds, for each column, its cell's text, or, for a column of mostly distinct texts that
    ``_parse_row`` only stores (names, prompts, category, template and ``meta_*`` columns), the cell's class:
    empty, or valid and not a sweep (with, for the prompt, its template's placeholders). Every check of
    ``_parse_row`` depends on the signature alone, so the first row of a group stands for all of it: when that
    row passes without issue or warning, so does every row of the group, and their specs differ only in those
    stored values (``_Group.expand``). A group whose first row fails, or whose cells are neither empty nor
    provably valid, is validated row by row by ``_parse_row`` for its exact messages.
    """

    def __init__(self, table: Table, params: list[str], caches: dict[str, dict[str, Any]]):
        self.table, self.params, self.caches = table, params, caches
        n = len(table)
        signature_columns = []
        self.per_row: dict[str, tuple[list[str], list[Any]]] = {}  # column -> (text, parsed value) of each row
        for column in table.columns:
            col = table.data[column]
            if len(col.values) <= _FEW_TEXTS or not (column in _PER_ROW or column in params):
                signature_columns.append(col.codes if col.codes is not None else range(n))
                continue
            classes, parsed = self._classify(column, col.values)
            codes = col.codes
            signature_columns.append(classes if codes is None else [classes[k] for k in codes])
            texts = col.cells()
            self.per_row[column] = (texts, texts if parsed is None else
                                    (parsed if codes is None else [parsed[k] for k in codes]))
        where = [i for i, c in enumerate(c for c in table.columns) if c in self.per_row]
        index: dict[tuple, int] = {}
        self.ids: list[int] = []
        self.groups: list[_Group | None] = []
        for i, signature in enumerate(zip(*signature_columns)):
            group = index.get(signature)
            if group is None:
                group = index[signature] = len(self.groups)
                self.groups.append(None if any(signature[w] == _OTHER for w in where) else self._group(i))
            self.ids.append(group)

    def _classify(self, column: str, texts: list[str]) -> tuple[list[int], list[Any] | None]:
        """Class of each distinct text of a per-row column, and the parsed values (None: each is its text)."""
        classes = []
        parsed = None
        if column in _NAME_COLUMNS:
            if _safe_names(texts, column == "scene"):
                return [_VALID if t else _EMPTY for t in texts], None
            parse = PARSERS[column][0]
            for k, (text, safe) in enumerate(zip(texts, map(_SAFE_NAME.fullmatch, texts))):
                if not text:
                    classes.append(_EMPTY)
                elif safe and len(text) <= MAX_NAME_LEN and (column != "scene" or text.lower() not in RESERVED_SCENES):
                    classes.append(_VALID)
                else:
                    try:
                        value = parse(text)
                    except BadValue:
                        classes.append(_OTHER)
                        continue
                    classes.append(_VALID)
                    if value != text:
                        parsed = parsed or list(texts)
                        parsed[k] = value
            return classes, parsed
        sweepable = column not in KNOWN and not column.startswith(META_PREFIX)  # a template parameter
        block = "\n".join(texts)
        clean = text_problem(block) is None  # tabs and line breaks are allowed in text
        prompt = column == "prompt"
        found = _FIELD.findall(block) if prompt else ()
        simple = prompt and len(found) == block.count("{") == block.count("}")  # every prompt's braces in {name}s
        if clean and not prompt and not (sweepable and "|" in block):
            return [_VALID if t else _EMPTY for t in texts], None
        fields: dict[tuple[str, ...], int] = {}
        for text in texts:
            if not text:
                classes.append(_EMPTY)
            elif (not clean and text_problem(text)) or (sweepable and "|" in text):
                classes.append(_OTHER)
            elif simple:  # the {name}s in order (repeats kept: a class per spelling, as fine as needed)
                classes.append(_VALID + fields.setdefault(tuple(_FIELD.findall(text)), len(fields)))
            elif prompt:
                try:
                    names = _template_fields(text)
                except BadValue:
                    classes.append(_OTHER)
                    continue
                classes.append(_VALID + fields.setdefault(names, len(fields)))
            else:
                classes.append(_VALID)
        return classes, None

    def _group(self, i: int) -> "_Group | None":
        probe = _Issues(self.table)
        row = _parse_row(self.table, self.table.labels[i], self.table.row(i), self.params, self.caches, probe)
        if row is None or probe.issues or probe.warnings:
            return None
        return _Group(self, row)

    def of(self, i: int) -> "_Group | None":
        """The group row ``i`` passes with, or None when it must be validated on its own."""
        return self.groups[self.ids[i]]

    def parsed(self, i: int) -> _Row:
        """Row ``i`` of a group as ``_parse_row`` makes it."""
        row = _parse_row(self.table, self.table.labels[i], self.table.row(i), self.params, self.caches,
                         _Issues(self.table))
        assert row is not None
        return row


class _Group:
    """Valid rows with one signature (``_Groups``), expanded from their first row's parsed values."""

    def __init__(self, groups: _Groups, first: _Row):
        self.groups, self.first, self.count = groups, first, first.count
        self.label = first.label
        self._combos: list | None = None

    def _prepare(self) -> bool:
        """What the group's rows share: per sweep combination its name suffix, seed, model, params and texts
        (False: left to ``_expand_row`` row by row, for its exact messages)."""
        if self._combos is not None:
            return bool(self._combos)
        first, params, per_row = self.first, self.groups.params, self.groups.per_row
        columns = [c for c, _ in first.swept]
        self._combos = []
        if "continue_from" in first.fixed:  # a bare base names the row's own scene
            return False
        options = [[(raw, parsed, f"__{c}-{slug(raw)}") for raw, parsed in opts] for c, opts in first.swept]
        template_params = [p for p in sorted(params) if (p in first.text or p in columns)
                           and not p.startswith(META_PREFIX)]  # fmt: skip
        # the texts a row's prompt and template_params read: the group's own, or the row's where they differ
        self.own_text = [(c, per_row[c][0]) for c in per_row if c in first.text
                         and (c in template_params or c in _template_fields(first.template))]  # fmt: skip
        own_params = any(c in template_params for c, _ in self.own_text)
        combos = []
        try:
            shared = None if _AUDIO_COLUMNS.intersection(columns) else _audio_params(first.fixed)
            for combo in itertools.product(*options):
                values, text = first.fixed, first.text
                if combo:
                    values, text = dict(values), dict(text)
                    for column, (raw, parsed, _) in zip(columns, combo):
                        values[column] = parsed
                        text[column] = raw
                model, gen, post = shared or _audio_params(values)
                fill = model != MIX_MODEL and (bool(first.template) or model != FILE_MODEL)
                params_text = None if own_params else tuple([(p, text[p]) for p in template_params])
                combos.append(("".join([o[2] for o in combo]), values["seed"] if "seed" in values else None,
                               text, params_text, model, gen, post, fill))
        except BadValue:
            return False
        self._combos = combos
        self.template_params = template_params
        self.variants = first.fixed.get("variants", 1)
        self.width = max(2, len(str(self.variants)))

        def value(column: str, default: Any) -> tuple[list | None, Any]:  # (each row's, or the group's)
            if column in per_row and column in first.fixed:
                return per_row[column][1], None
            return None, first.fixed.get(column, default)

        self.scene, self.asset = value("scene", None), value("asset", None)
        self.layer, self.category = value("layer", None), value("category", "")
        self.prompt = (per_row["prompt"][0], None) if "prompt" in per_row and first.template else (None, first.template)
        self.meta = [(p, per_row[p][0] if p in per_row else None, " ".join(first.text[p].split()))
                     for p in sorted(params) if p.startswith(META_PREFIX) and p in first.text]  # fmt: skip
        return True

    def expand(self, i: int, issue) -> list[AssetSpec] | None:
        """The specs of row ``i`` as ``_expand_row`` makes them, or None when a combination fails (the caller
        expands the row with ``_expand_row``, which reports it)."""
        if not self._prepare():
            return None
        first = self.first
        rows, scene = self.scene
        scene = rows[i] if rows else scene
        rows, base = self.asset
        base = rows[i] if rows else base
        rows, template = self.prompt
        template = rows[i] if rows else template
        rows, layer = self.layer
        layer = rows[i] if rows else layer
        rows, category = self.category
        category = rows[i] if rows else category
        tags = first.fixed.get("tags", ())
        meta = tuple([(p, " ".join(rows[i].split()) if rows else text) for p, rows, text in self.meta])
        source = _new_source(self.groups.table.file, self.groups.table.labels[i])
        default_seed = first.fixed["seed"] if "seed" in first.fixed else derive_seed(scene, base)
        own_text = self.own_text
        out = []
        for suffix, seed, text, params_text, model, gen, post, fill in self._combos:
            if own_text:
                text = dict(text)
                for column, texts in own_text:
                    text[column] = texts[i]
            try:
                prompt = _fill(template, text) if fill else ""
            except BadValue:
                return None
            name = shorten(base + suffix) if suffix else base
            spec = _new_spec(scene, name, model, prompt, default_seed if seed is None else seed, gen, post, layer,
                             category, tags, params_text or tuple([(p, text[p]) for p in self.template_params]),
                             source, meta)  # fmt: skip
            if self.variants == 1:
                out.append(spec)
                continue
            for k in range(1, self.variants + 1):
                asset = shorten(f"{name}__v{k:0{self.width}d}")
                out.append(spec.replace(asset=asset, seed=derive_seed(spec.seed, scene, asset)))
        return out


_new = object.__new__
_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(AssetSpec))
_SOURCE_FIELDS_ = tuple(f.name for f in dataclasses.fields(Source))
assert _SPEC_FIELDS == ("scene", "asset", "model", "prompt", "seed", "gen", "post", "layer", "layers", "category", "tags",
                        "template_params", "source", "meta"), "_new_spec lists AssetSpec's fields in this order"
assert _SOURCE_FIELDS_ == ("file", "row")


def _new_spec(scene, asset, model, prompt, seed, gen, post, layer, category, tags, template_params, source, meta
              ) -> AssetSpec:
    """``AssetSpec(...)`` with these fields (and no layers), built as its generated ``__init__`` would but
    without a frozen ``__setattr__`` call per field: the bulk path builds one per expanded row."""
    spec = _new(AssetSpec)
    spec.__dict__.update(zip(_SPEC_FIELDS, (scene, asset, model, prompt, seed, gen, post, layer, (), category,
                                            tags, template_params, source, meta)))  # fmt: skip
    return spec


def _new_source(file: str, row: int | str) -> Source:
    """``Source(file, row)``, built like :func:`_new_spec`."""
    source = _new(Source)
    source.__dict__.update(zip(_SOURCE_FIELDS_, (file, row)))
    return source


def _audio_params(values: dict) -> tuple[str, GenParams, PostParams]:
    """Model, generation and delivery params of one expanded row; raises BadValue on bad combinations."""
    model = values["model"]
    post_kw = {k: values[k] for k in _POST_FIELDS if k in values}
    if "loudness" in values:
        post_kw["loudness_lufs"] = values["loudness"]
    if model == FILE_MODEL:
        post_kw["max_attempts"] = 1  # a recording cannot be re-rolled: a failed gate just fails its QC
    post = PostParams(**post_kw)
    if post.bpm and post.bars:
        target = bars_seconds(post.bars, post.bpm)
    else:
        target = values.get("duration_s", 0.0)  # 0 only for mixes without duration: filled from layers
    source = _source_params(values, post, target) if model == FILE_MODEL else {}
    if model == FILE_MODEL and not target:  # the whole segment: a loop keeps crossfade_s of it as loop material
        target = source["source_end_s"] - source["source_start_s"] - (post.crossfade_s if post.loop else 0.0)
        if target <= 0:
            raise BadValue(f"the segment read is {target + post.crossfade_s:g} s, not longer than crossfade_s "
                           f"{post.crossfade_s:g}: read more of the recording or shorten crossfade_s",
                           "source_end_s" if "source_end_s" in values else "source")
    gen_s = target + post.crossfade_s if post.loop and target else target  # AssetSpec.target_duration_s inverts this
    if gen_s > MAX_DURATION_S:
        raise BadValue(f"would generate {gen_s:g} s; expected at most {MAX_DURATION_S:g} s")
    if post.loop and target and post.crossfade_s >= target:
        raise BadValue(f"crossfade_s {post.crossfade_s:g} must be shorter than the loop ({target:g} s)")
    if post.qc and "loudness_tolerance_lu" in values:
        from assetgen.qc import parse_qc_text

        given = parse_qc_text(post.qc)[1].get("loudness")
        if given is not None and given != post.loudness_tolerance_lu:
            raise BadValue(f"qc sets loudness:{given:g} and loudness_tolerance_lu is {post.loudness_tolerance_lu:g}; "
                           "give the loudness tolerance once", "qc", post.qc)
    if post.loop and target and post.loop_tolerance_s >= target:
        raise BadValue(f"loop_tolerance_s {post.loop_tolerance_s:g} must be shorter than the loop ({target:g} s)")
    gen_kw = {k: values[k] for k in _GEN_FIELDS if k in values}
    if model == TTS_MODEL:
        gen_kw = {"voice": values.get("voice", DEFAULT_TTS_VOICE), "rate": values.get("rate", DEFAULT_TTS_RATE)}
    elif any(k in values for k in _TTS_FIELDS):
        raise BadValue(f"voice and rate apply only to model tts, not {model}")
    if model == FILE_MODEL:
        gen_kw = source
    elif any(k in values for k in _SOURCE_FIELDS):
        raise BadValue(f"source, source_start_s and source_end_s apply only to model file, not {model}")
    if "continue_from" in values:
        gen_kw.update(_continuation_params(values, model))
    elif "prompt_s" in values:
        raise BadValue("prompt_s applies only to a row with continue_from", "prompt_s", f"{values['prompt_s']:g}")
    if "melody" in values:
        gen_kw.update(_melody_params(values, model))
    return model, GenParams(duration_s=gen_s, **gen_kw), post


def _continuation_params(values: dict, model: str) -> dict:
    """``GenParams`` fields of a continuation: the base ``scene/asset[@vN]`` (a bare asset is in the row's scene)
    and ``prompt_s``; only MusicGen rows can continue audio (audiocraft's ``generate_continuation``)."""
    ref = values["continue_from"]
    if not _continues_music(model):
        raise BadValue(f"continue_from needs a MusicGen model (music, facebook/musicgen-*, or a music checkpoint "
                       f"directory), not {model}", "continue_from", ref)
    if ref.startswith("/"):
        ref = values["scene"] + ref
    return {"continue_from": ref, "prompt_s": float(values.get("prompt_s", DEFAULT_PROMPT_S))}


def _melody_params(values: dict, model: str) -> dict:
    """``GenParams`` fields of a melody: a recording (its path and sha256) or an asset ``scene/asset[@vN]`` (a bare
    asset is in the row's scene); only models with a chroma conditioner take one (``generate_with_chroma``)."""
    from assetgen.models.melody import model_takes_melody
    from assetgen.sources import Recording

    value = values["melody"]
    if not isinstance(value, Recording) and value.startswith("/"):
        value = values["scene"] + value
    shown = value.path if isinstance(value, Recording) else value
    if not model_takes_melody(model):
        raise BadValue(f"melody needs a model with a chroma conditioner (melody, facebook/musicgen-melody, or a "
                       f"melody checkpoint directory), not {model}", "melody", shown)
    if "continue_from" in values:
        raise BadValue("melody and continue_from cannot be combined (audiocraft continues a take without melody "
                       "conditioning): give the row one of them", "melody", shown)
    if isinstance(value, Recording):
        return {"melody": value.path, "melody_sha256": value.sha256}
    return {"melody": value}


def _continues_music(model: str) -> bool:
    if model in ("music", "melody") or model.startswith("facebook/musicgen-"):
        return True
    if Path(model).is_absolute():  # a checkpoint directory (parse_model made it absolute)
        from assetgen.models.registry import checkpoint_kind

        return checkpoint_kind(model) == "music"
    return False


def _source_params(values: dict, post: PostParams, target: float) -> dict:
    """``GenParams`` fields of a recorded source: the file, its sha256 and the segment ``[start, end)`` (s),
    checked against the recording's length and the loop the row asks for."""
    rec = values["source"]
    length = rec.duration_s
    start = values.get("source_start_s", 0.0)
    end = values.get("source_end_s", length)
    if start >= length:
        raise BadValue(f"source_start_s {start:g} is at or past the end of {rec.path} ({length:g} s)",
                       "source_start_s", f"{start:g}")
    if end > length + 0.5 / rec.sample_rate:
        raise BadValue(f"source_end_s {end:g} is past the end of {rec.path} ({length:g} s)", "source_end_s", f"{end:g}")
    if end <= start:
        raise BadValue(f"source_end_s {end:g} must be after source_start_s {start:g}", "source_end_s", f"{end:g}")
    segment = end - start
    if segment > MAX_DURATION_S:
        raise BadValue(f"the segment read is {segment:g} s, longer than {MAX_DURATION_S:g} s: set source_start_s "
                       "and source_end_s", "source", rec.path)
    if post.loop and target and target > segment + 1e-9:
        raise BadValue(f"the loop ({target:g} s) is longer than the segment read ({segment:g} s of {rec.path}): "
                       "shorten the loop or read more of the recording", "duration_s" if "duration_s" in values
                       else "bars", None)  # fmt: skip
    return {"source": rec.path, "source_sha256": rec.sha256, "source_start_s": float(start),
            "source_end_s": float(min(end, length))}


def _fill(template: str, text: dict[str, str]) -> str:
    """Prompt with placeholders filled from the row's cells, whitespace-normalised."""
    prompt = " ".join((template.format_map(text) if "{" in template else template).split())
    if not prompt:
        raise BadValue("prompt is empty after filling the template")
    return prompt


# --- across files --------------------------------------------------------------------------------


def _add_mixes(specs: list[AssetSpec], check_layerless: bool = True) -> tuple[list[AssetSpec], list[ValidationIssue]]:
    """Attach layers to their scene's mix (explicit ``model=mix`` row or a default ``mix`` asset)."""
    issues: list[ValidationIssue] = []
    layers: dict[str, list[AssetSpec]] = {}
    mixes: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        if spec.is_mix:
            mixes.setdefault(spec.scene, []).append(i)
        elif spec.layer:
            layers.setdefault(spec.scene, []).append(spec)

    def where(spec):
        return (spec.source.file, spec.source.row) if spec.source else ("(generated)", None)

    out = list(specs)
    for scene, idx in mixes.items():
        if len(idx) > 1:
            for i in idx[1:]:
                issues.append(ValidationIssue(*where(specs[i]), "model", "mix",
                                              f"scene '{scene}' already has a mix row ({specs[idx[0]].source})"))  # fmt: skip
        if scene not in layers and check_layerless:
            issues.append(ValidationIssue(*where(specs[idx[0]]), "model", "mix",
                                          f"mix row but scene '{scene}' has no rows with a layer value"))  # fmt: skip
    for scene, members in layers.items():
        names = tuple(sorted(s.asset for s in members))
        length = max(s.post.start_s + s.target_duration_s for s in members)
        if scene in mixes:
            i = mixes[scene][0]
            mix = specs[i]
            extra = mix.post.crossfade_s if mix.post.loop else 0.0  # see AssetSpec.target_duration_s
            gen = mix.gen if mix.gen.duration_s > 0 else GenParams(duration_s=length + extra)
            out[i] = mix.replace(layers=names, gen=gen)
        else:
            first = members[0]
            out.append(
                AssetSpec(scene=scene, asset=DEFAULT_MIX_ASSET, model=MIX_MODEL, prompt="", seed=0,
                          gen=GenParams(duration_s=length), post=PostParams(), layers=names,
                          category=first.category, source=first.source)  # fmt: skip
            )
    return out, issues


def _stem_sets(specs: list[AssetSpec]) -> list[ValidationIssue]:
    """Rows sharing a ``stem_set`` in a scene must share one grid, so that every stem is delivered with the same
    length in samples and the same loop points: the same ``loop``, ``sample_rate`` and either ``bpm`` and
    ``bars`` or one duration (a tempo estimated per stem, or a loop tolerance, would let lengths differ)."""
    sets: dict[tuple[str, str], list[AssetSpec]] = {}
    for spec in specs:
        if spec.post.stem_set and not spec.is_mix:
            sets.setdefault((spec.scene, spec.post.stem_set), []).append(spec)
    issues = []

    def bad(spec, column, value, message):
        where = (spec.source.file, spec.source.row) if spec.source else ("(generated)", None)
        issues.append(ValidationIssue(*where, column, value, message))

    for (scene, name), members in sets.items():
        first = members[0]
        if len(members) < 2:
            bad(first, "stem_set", name, f"stem set '{name}' of scene '{scene}' has one row; a set needs two or more")
            continue
        for spec in members:
            post = spec.post
            if post.loop and post.bars and not post.bpm:
                bad(spec, "bars", str(post.bars), "a stem of a loop set needs bpm with bars (a tempo estimated per "
                    "stem would give each stem its own length)")
            if post.loop and post.loop_tolerance_s:
                bad(spec, "loop_tolerance_s", f"{post.loop_tolerance_s:g}", "a stem's loop length must be exact: "
                    "leave loop_tolerance_s empty")
        for spec in members[1:]:
            a, b = first.post, spec.post
            for column, mine, theirs in (("loop", b.loop, a.loop), ("sample_rate", b.sample_rate, a.sample_rate),
                                         ("bpm", b.bpm, a.bpm), ("bars", b.bars, a.bars)):
                if mine != theirs:
                    bad(spec, column, None if mine is None else str(mine),
                        f"stem set '{name}': {column} {mine} differs from {theirs} of {first.ident} (the stems of a "
                        "set share one grid)")
                    break
            else:
                n_first = round(first.target_duration_s * a.sample_rate)
                n_mine = round(spec.target_duration_s * b.sample_rate)
                if n_mine != n_first:
                    bad(spec, "duration_s", f"{spec.target_duration_s:g}",
                        f"stem set '{name}': {n_mine} samples long, {first.ident} is {n_first} (the stems of a set "
                        "share one length)")
    return issues


def _dependencies(specs: list[AssetSpec]) -> list[ValidationIssue]:
    """Every base (``continue_from``, or ``melody`` naming an asset: ``GenParams.base``) is an asset of this run
    that is not a scene mix, and no chain of bases returns to where it started."""
    if not any(s.gen.base for s in specs):
        return []
    by_ident = {s.ident: s for s in specs}
    issues = []

    def bad(spec, message):
        where = (spec.source.file, spec.source.row) if spec.source else ("(generated)", None)
        column = "continue_from" if spec.gen.continue_from else "melody"
        issues.append(ValidationIssue(*where, column, spec.gen.base, message))

    bases = {}
    for spec in specs:
        ref = spec.gen.base
        if not ref:
            continue
        base = ref.partition("@v")[0]
        target = by_ident.get(base)
        use = "continue" if spec.gen.continue_from else "take the melody of"
        if target is None:
            hint = closest(base, list(by_ident))
            bad(spec, f"no asset {base} in this run's manifests (a base must be rendered in the same run: pass "
                "its manifest too)" + (f"; did you mean {hint}?" if hint else ""))
        elif target.is_mix:
            bad(spec, f"{base} is a scene mix, rendered after every generated asset: {use} one of its layers")
        else:
            bases[spec.ident] = base
    reported: set[str] = set()
    for start in sorted(bases):
        chain, ident = [start], bases[start]
        while ident in bases and ident not in chain:
            chain.append(ident)
            ident = bases[ident]
        if ident in chain and ident not in reported:  # a cycle through ident
            cycle = chain[chain.index(ident):]
            reported.update(cycle)
            spec = by_ident[ident]
            bad(spec, ("continue_from" if spec.gen.continue_from else "melody") + " cycle: "
                + " -> ".join([*cycle, ident]) + " (each asset would have to render before the others)")
    return issues


def _duplicates(specs: list[AssetSpec]) -> list[ValidationIssue]:
    """Scene/asset pairs that occur twice (case-insensitively: macOS/Windows file systems fold case)."""
    seen: dict[str, AssetSpec] = {}
    issues = []
    for spec in specs:
        folded = f"{spec.scene}/{spec.asset}".casefold()  # spec.ident
        first = seen.setdefault(folded, spec)
        if first is spec:
            continue
        where = (spec.source.file, spec.source.row) if spec.source else ("(generated)", None)
        what = "default mix asset" if spec.is_mix and spec.asset == DEFAULT_MIX_ASSET else "asset"
        issues.append(
            ValidationIssue(*where, "asset", spec.asset,
                            f"duplicate {what} '{spec.ident}' after expansion; first defined at {first.source}"
                            + (" (names differ only in case)" if first.ident != spec.ident else ""))  # fmt: skip
        )
    return issues
