"""Summary PDF per configuration and the ``report.html`` of a results folder (instead of the reference's LaTeX PDF;
ANALYSIS.md binding decision 6).

No LaTeX: the PDF is written with matplotlib ``PdfPages`` (a cover with the configuration, preset, runs, date,
note and contents, then one page per figure with its title and caption) and its bookmarks, one per figure,
are added with pypdf. ``report.html`` leads with the findings: the study settings, the runs kept and
excluded, the headline figure and the study statistics, then one section per configuration (contents list
and anchors), the pretraining figures, the per-run traces and an annotated table of the CSV files. It needs
no network (plain HTML and CSS, images by relative path). Only existing files are referenced; missing
figures are skipped with a warning.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import os
import re
import textwrap
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from analysis.captions import CSV_DESCRIPTIONS, FigureEntry, caption_for
from parameters import PRESET_DESCRIPTIONS, ParameterError
from store import layout
from store.errors import ResultsFileError
from store.exclusion import excluded_runs_with_thresholds, read_all_pretraining_results
from store.files import atomic_open, has_stored
from store.parameter_files import read_preset
from store.records import pretraining_folder, read_environment_record, study_record

logger = logging.getLogger(__name__)

PER_JOB_FOLDER = re.compile(
    rf"(?:^|/)(?:{layout.PRETRAINING_RUNS}|{layout.TRAINING_RUNS})/{layout.RUN_FOLDER_PREFIX}\d+/"
)
"""Per-job copies of the combined tables (listed once per pattern in the file table)."""


def preset_label(preset: str | None) -> str:
    """The preset and which version of the model it is (parameters.PRESET_DESCRIPTIONS), for the report."""
    if not preset:
        return "not recorded"
    description = PRESET_DESCRIPTIONS.get(preset)
    return f"{preset} ({description})" if description else preset


def _existing(entries: Sequence[FigureEntry], root: Path | None = None) -> list[tuple[Path, str]]:
    """Resolve entries (relative to root if given) and keep the existing files."""
    out = []
    for path, caption in entries:
        p = Path(path)
        p = root / p if root is not None and not p.is_absolute() else p
        if p.is_file():
            out.append((p, caption))
        else:
            logger.warning("figure %s does not exist; left out", p)
    return out


# ------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class StudySettings:
    """What the report says about the study as a whole."""

    name: str
    preset: str | None
    runs: int
    seed: int | None
    configurations: tuple[str, ...]
    code_version: str | None
    note: str
    created: str | None
    runs_started: int | None = None
    """Pretraining runs of the study (None when not recorded)."""
    pretraining_excluded: dict[int, float] = field(default_factory=dict)
    """Runs excluded after pretraining (original indices) and their final pretraining thresholds, degrees."""
    pretraining_from: str | None = None
    """The folder whose pretraining the study reused (``--skip-pretraining``); None for its own."""


def _recorded_preset(root: Path) -> str | None:
    """The preset the folder's parameters.py records (None where it has none or cannot be read)."""
    path = layout.StudyLayout(root).parameters
    if not path.is_file():
        return None
    try:
        return read_preset(path, default=None)
    except ParameterError:
        return None


def read_study_settings(root: Path, confs: Sequence[str], runs: int) -> StudySettings:
    """Settings of a results folder from environment.json, parameters.py and note.txt (each optional)."""
    env = read_environment_record(root, strict=False)  # {} for a folder written by hand
    study = study_record(env)
    preset = _recorded_preset(root) or env.get("preset") or study.get("preset")
    seed = env.get("base_seed", study.get("base_seed"))
    note_path = root / layout.NOTE
    note = note_path.read_text(encoding="utf-8").strip() if note_path.is_file() else ""
    source = pretraining_folder(root)
    # the runs its pretraining started
    started = study_record(read_environment_record(source, strict=False)).get("runs")
    return StudySettings(
        name=root.name, preset=str(preset) if preset else None, runs=runs,
        seed=int(seed) if seed is not None else None, configurations=tuple(confs),
        code_version=env.get("code_version"), note=note, created=env.get("created"),
        runs_started=int(started) if isinstance(started, int) else None,
        pretraining_excluded=pretraining_exclusions(source),
        pretraining_from=None if source == root else str(source),
    )  # fmt: skip


def pretraining_exclusions(pretraining: Path) -> dict[int, float]:
    """Runs excluded after the pretraining in ``pretraining`` (a study's :func:`store.records.pretraining_folder`,
    another folder's for a study that reused it with ``--skip-pretraining``) with their final thresholds;
    empty where the folder has no such record.

    A folder written by hand may have no exclusion list: nothing to report. A list or pretraining file that
    exists but cannot be read is logged, so the report's silence about exclusions never hides a damaged file.
    """
    if not has_stored(pretraining / layout.EXCLUDED_RUNS):
        return {}
    try:
        return excluded_runs_with_thresholds(pretraining, read_all_pretraining_results(pretraining))
    except (ResultsFileError, KeyError, ValueError) as error:
        logger.warning("report: runs excluded after pretraining not listed: %s", error)
        return {}


@dataclass
class ConfigurationReport:
    """One configuration's part of the report."""

    name: str
    runs: list[int]
    excluded: dict[int, str]
    figures: list[FigureEntry] = field(default_factory=list)
    per_run: list[FigureEntry] = field(default_factory=list)

    @property
    def retained(self) -> list[int]:
        """Runs the configuration keeps."""
        return [r for r in self.runs if r not in self.excluded]


# ---------------------------------------------------------------------------------------------------- PDF
def _page(title: str, caption: str, image_path: Path | None = None) -> Figure:
    """An A4-landscape page with a title, an optional image and a wrapped caption."""
    fig = Figure(figsize=(11.69, 8.27))
    fig.suptitle(title, fontsize=14)
    if image_path is not None:
        ax = fig.add_axes((0.03, 0.12, 0.94, 0.8))
        ax.imshow(mpimg.imread(image_path))
        ax.set_axis_off()
    fig.text(0.5, 0.06, textwrap.fill(caption, 140), ha="center", va="center", fontsize=11)
    return fig


def _cover(title: str, lines: Sequence[str], contents: Sequence[str]) -> Figure:
    """The cover: title, settings lines and a numbered contents list (two columns when long)."""
    fig = Figure(figsize=(11.69, 8.27))
    fig.text(0.06, 0.92, title, fontsize=20, weight="bold", va="top")
    y = 0.84
    for line in lines:
        for part in textwrap.wrap(line, 120) or [""]:
            fig.text(0.06, y, part, fontsize=11, va="top")
            y -= 0.03
    fig.text(0.06, y - 0.01, "Contents", fontsize=14, weight="bold", va="top")
    top = y - 0.06
    per_column = max(1, int((top - 0.04) / 0.025))
    for i, name in enumerate(contents):
        column, row = divmod(i, per_column)
        fig.text(0.06 + 0.45 * column, top - 0.025 * row, f"{i + 2:>3}  {name}", fontsize=9, va="top",
                 family="monospace")  # fmt: skip
    return fig


def cover_lines(settings: StudySettings | None, conf: ConfigurationReport | None) -> list[str]:
    """Configuration, preset, runs, date and note of a summary PDF's cover."""
    lines = []
    if conf is not None:
        excluded = ", ".join(f"{r} ({why})" for r, why in sorted(conf.excluded.items())) or "none"
        lines += [f"Configuration: {conf.name}",
                  f"Runs: {len(conf.runs)}, kept {len(conf.retained)}, excluded: {excluded}"]  # fmt: skip
    if settings is not None:
        lines += [f"Study: {settings.name}", f"Preset: {preset_label(settings.preset)}",
                  f"Base seed: {settings.seed if settings.seed is not None else 'not recorded'}",
                  f"Code version: {settings.code_version or 'not recorded'}",
                  f"Note: {settings.note.splitlines()[0] if settings.note else 'none'}"]  # fmt: skip
    lines.append(f"Written: {dt.datetime.now().astimezone().isoformat(timespec='minutes')}")
    return lines


def write_summary_pdf(
    figure_paths_with_captions: Sequence[FigureEntry],
    pdf_path: str | Path,
    settings: StudySettings | None = None,
    conf: ConfigurationReport | None = None,
) -> Path:
    """A cover (configuration, preset, runs, date, note, contents), then one page per existing figure; every
    figure page has a PDF bookmark named after the figure."""
    from pypdf import PdfReader, PdfWriter  # only the report part needs it

    pdf_path = Path(pdf_path)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    entries = [(p, c + n) for p, c, n in _dedupe_twins(_existing(figure_paths_with_captions))]
    title = f"Summary: {conf.name}" if conf is not None else pdf_path.stem
    raw = pdf_path.with_name(f".{pdf_path.name}.pages")
    with PdfPages(raw) as pdf:
        pdf.savefig(_cover(title, cover_lines(settings, conf), [p.stem for p, _ in entries] or ["no figures"]))
        for path, caption in entries:
            pdf.savefig(_page(path.stem, caption, path))
    writer = PdfWriter(clone_from=PdfReader(raw))
    writer.add_outline_item(title="Cover and contents", page_number=0)
    for i, (path, _) in enumerate(entries, start=1):
        writer.add_outline_item(title=path.stem, page_number=i)
    writer.add_metadata({"/Title": title})
    with atomic_open(pdf_path, "wb") as fh:
        writer.write(fh)
    raw.unlink()
    return pdf_path


# --------------------------------------------------------------------------------------------------- HTML
CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;line-height:1.4}"
    "img{max-width:100%;border:1px solid #ccc} figure{margin:1.5em 0} figcaption{margin-top:.3em;color:#333}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em} td,th{border:1px solid #ccc;padding:.25em .6em;"
    "text-align:left;vertical-align:top} th{background:#f2f2f2} td.num{text-align:right;font-variant-numeric:"
    "tabular-nums} nav ul{columns:2} .note{color:#666;font-size:.9em} .thumbs img{width:31%;margin:.5%}"
    "code{background:#f6f6f6;padding:0 .2em}"
)


def _href(path: Path, root: Path) -> str:
    """URL-quoted POSIX path of a file relative to root."""
    return urllib.parse.quote(Path(os.path.relpath(path, root)).as_posix())


def _rel(path: Path, root: Path) -> str:
    """The path relative to root, for display."""
    return html.escape(Path(os.path.relpath(path, root)).as_posix())


def anchor(*parts: str) -> str:
    """An HTML id from names (letters, digits, '-', '_')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(parts)).strip("-")


def _figure_html(path: Path, caption: str, root: Path, ident: str, extra: str = "") -> str:
    """A <figure> block for one image, with an id for the contents list."""
    href = _href(path, root)
    return (
        f'<figure id="{ident}"><a href="{href}"><img src="{href}" alt="{_rel(path, root)}" loading="lazy"></a>'
        f"<figcaption><b>{_rel(path, root)}</b>: {html.escape(caption)}{extra}</figcaption></figure>"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table of already escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: object, digits: int = 3) -> str:
    """A number with `digits` significant digits ('' for NaN)."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return html.escape(str(value))
    return "" if not np.isfinite(x) else f"{x:.{digits}g}"


def settings_html(settings: StudySettings) -> str:
    """The study settings table."""
    rows = [
        ("Study", html.escape(settings.name)),
        ("Preset", html.escape(preset_label(settings.preset))),
        ("Runs", runs_line(settings)),
        ("Pretraining", f"reused from {html.escape(settings.pretraining_from)}" if settings.pretraining_from
                        else "this folder's"),  # fmt: skip
        ("Base seed", str(settings.seed) if settings.seed is not None else "not recorded"),
        ("Configurations", html.escape(", ".join(settings.configurations))),
        ("Code version", html.escape(settings.code_version or "not recorded")),
        ("Created", html.escape(settings.created or "not recorded")),
        ("Note", html.escape(settings.note).replace("\n", "<br>") or "none"),
    ]
    return _table(("Setting", "Value"), rows)


def runs_line(settings: StudySettings) -> str:
    """Runs started, excluded after pretraining and trained in stage 2."""
    if settings.runs_started is None and not settings.pretraining_excluded:
        return str(settings.runs)
    started = settings.runs_started if settings.runs_started is not None else "?"
    return (f"{started} pretrained; {len(settings.pretraining_excluded)} excluded after pretraining; "
            f"{settings.runs} trained in stage 2")  # fmt: skip


def pretraining_exclusions_html(settings: StudySettings) -> str:
    """One paragraph naming the runs excluded after pretraining and their final thresholds."""
    if not settings.pretraining_excluded:
        return ""
    runs = "; ".join(f"run {r}: {_fmt(t)}°" for r, t in sorted(settings.pretraining_excluded.items()))
    return (f"<p>Excluded after pretraining (final psychometric threshold outside the accepted range; 180° = not "
            f"measurable; pretraining run indices): {html.escape(runs)}. Stage 2 numbers the kept runs "
            f"0, 1, ... in their original order.</p>")  # fmt: skip


def runs_html(confs: Sequence[ConfigurationReport], settings: StudySettings | None = None) -> str:
    """Runs excluded after pretraining, then runs kept and excluded per configuration, with the reasons."""
    rows = []
    for c in confs:
        excluded = "; ".join(f"run {r}: {html.escape(why)}" for r, why in sorted(c.excluded.items())) or "none"
        rows.append((html.escape(c.name), str(len(c.runs)), str(len(c.retained)), str(len(c.excluded)), excluded))
    table = _table(("Configuration", "Runs in stage 2", "Kept", "Excluded", "Excluded runs and reasons"), rows,
                   (1, 2, 3))  # fmt: skip
    return (pretraining_exclusions_html(settings) if settings else "") + table


KEY_COMPARISONS: tuple[str, ...] = (
    "dJ_II sup vs mid",
    "dE/I ratio sup vs mid",
    "staircase_offset post vs pre",
    "psychometric_offset post vs pre",
)
"""The tests of study_stats.csv shown in the report (the claim, the E/I balance, the behaviour)."""


def stats_html(stats: pd.DataFrame | None) -> str:
    """The study statistics table (study_stats.csv)."""
    if stats is None or stats.empty:
        return "<p>No study statistics (run the stats part).</p>"
    stats = stats[stats["comparison"].isin(KEY_COMPARISONS)]
    rows = [
        (html.escape(str(r["configuration"])), html.escape(str(r["comparison"])), str(int(r["n"])),
         _fmt(r["median_difference"]), html.escape(str(r["unit"])), _fmt(r["effect_size"], 2), _fmt(r["p"]),
         html.escape("" if pd.isna(r["note"]) else str(r["note"])))
        for _, r in stats.iterrows()
    ]  # fmt: skip
    return _table(
        ("Configuration", "Comparison", "n", "Median difference", "Unit", "Effect size r", "p", "Note"),
        rows,
        (2, 3, 5, 6),
    ) + (
        f'<p class="note">The key tests; every test is in <a href="{layout.STUDY_STATS}">{layout.STUDY_STATS}</a>. '
        "Wilcoxon signed-rank tests (two-sided, exact for small n) on per-run paired differences; "
        "effect size: matched-pairs rank-biserial correlation. With n &lt; 2 nothing is tested; with n &lt; 6 "
        "no p can fall below 0.05.</p>"
    )


def summary_html(summary: pd.DataFrame | None) -> str:
    """study_summary.csv as a (quantity x configuration) table of median [q25, q75] (n)."""
    if summary is None or summary.empty:
        return "<p>No study summary (run the stats part).</p>"
    confs = list(dict.fromkeys(summary["configuration"]))
    quantities = list(dict.fromkeys(summary["quantity"]))
    cells = {(r["quantity"], r["configuration"]): r for _, r in summary.iterrows()}
    rows = []
    for q in quantities:
        row = [html.escape(str(q)), html.escape(str(cells[(q, confs[0])]["unit"]))]
        for c in confs:
            r = cells.get((q, c))
            if r is None or int(r["n"]) == 0:
                text = "not measured" if r is not None and int(r["n_not_measured"]) else "—"
            else:
                text = f"{_fmt(r['median'])} [{_fmt(r['q25'])}, {_fmt(r['q75'])}] (n = {int(r['n'])})"
                if int(r["n_not_measured"]):
                    text += f", {int(r['n_not_measured'])} not measured"
            row.append(text)
        rows.append(row)
    return _table(("Quantity", "Unit", *map(html.escape, confs)), rows) + (
        '<p class="note">Median [25th, 75th percentile] over the kept runs; d_X: change of X over stage 2 '
        "(first to last stage-2 row, % of the start value); _pre/_post: first/last stage-2 value.</p>"
    )


def _twin_of(path: Path) -> Path | None:
    """The ``_train`` twin of a figure of every training run (None if the figure has no twin)."""
    twin = path.with_name(f"{path.stem}_train{path.suffix}")
    return twin if not path.stem.endswith("_train") and twin.is_file() else None


def _dedupe_twins(figures: list[tuple[Path, str]]) -> list[tuple[Path, str, str]]:
    """Figures with a byte-identical ``_train`` twin shown once, where the first of the two comes (with a
    note); differing twins both kept."""
    partner: dict[Path, Path] = {}
    for path, _ in figures:
        twin = _twin_of(path)
        if twin is not None and twin.read_bytes() == path.read_bytes():
            partner[path], partner[twin] = twin, path
    out, shown = [], set()
    for path, caption in figures:
        if path in partner and partner[path] in shown:
            continue
        shown.add(path)
        if path in partner:
            note = f" Identical to {partner[path].name}: no run with stage-2 rows is excluded."
        elif _twin_of(path) is not None:
            note = " Every run with stage-2 rows (the _train twin shows the kept runs)."
        elif path.stem.endswith("_train"):
            note = " The kept runs only."
        else:
            note = ""
        out.append((path, caption, note))
    return out


def configuration_html(conf: ConfigurationReport, root: Path, pdf: Path | None) -> str:
    """A configuration's section: contents list, then its figures and per-run traces."""
    figures = _dedupe_twins(_existing(conf.figures, root))
    sec = anchor("conf", conf.name)
    items = "".join(f'<li><a href="#{anchor(sec, p.stem)}">{html.escape(p.stem)}</a></li>' for p, _, _ in figures)
    parts = [f'<section id="{sec}"><h2>Configuration {html.escape(conf.name)}</h2>',
             f"<p>{len(conf.retained)} of {len(conf.runs)} runs kept.</p>"]  # fmt: skip
    if pdf is not None and pdf.is_file():
        parts.append(f'<p>All figures of this configuration in one PDF: <a href="{_href(pdf, root)}">'
                     f"{_rel(pdf, root)}</a></p>")  # fmt: skip
    parts.append(f"<nav><ul>{items}</ul></nav>" if items else "<p>No figures.</p>")
    parts += [_figure_html(p, c, root, anchor(sec, p.stem), html.escape(n)) for p, c, n in figures]
    per_run = _existing(conf.per_run, root)
    if per_run:
        thumbs = "".join(f'<a href="{_href(p, root)}"><img src="{_href(p, root)}" alt="{_rel(p, root)}" '
                         f'title="{_rel(p, root)}" loading="lazy"></a>' for p, _ in per_run)  # fmt: skip
        parts.append(f'<details id="{anchor(sec, "per-run")}"><summary>Per-run training traces ({len(per_run)} '
                     f"runs; {html.escape(caption_for('resultsfig'))} Click an image for full size.)</summary>"
                     f'<div class="thumbs">{thumbs}</div></details>')  # fmt: skip
    parts.append("</section>")
    return "".join(parts)


def _any_run(match: re.Match) -> str:
    """``pretraining_runs/run_7/`` -> ``pretraining_runs/run_*/`` (a PER_JOB_FOLDER match)."""
    prefix = layout.RUN_FOLDER_PREFIX
    return match.group(0).split(prefix)[0] + prefix + "*/"


def files_html(root: Path) -> str:
    """The annotated table of the CSV and PDF files (per-job copies collapsed to one line per pattern)."""
    rows, patterns = [], {}
    for path in sorted([*root.rglob("*.csv"), *root.rglob("*.pdf")]):
        rel = Path(os.path.relpath(path, root)).as_posix()
        if rel.startswith(("scripts/", ".")):
            continue
        if PER_JOB_FOLDER.search(rel):
            key = PER_JOB_FOLDER.sub(_any_run, rel)
            patterns.setdefault(key, []).append(path)
            continue
        what = CSV_DESCRIPTIONS.get(path.name, "summary of a configuration's figures (cover, contents, bookmarks)"
                                    if path.suffix == ".pdf" else "")  # fmt: skip
        rows.append((f'<a href="{_href(path, root)}">{html.escape(rel)}</a>', html.escape(what)))
    for key, paths in sorted(patterns.items()):
        what = f"per-job files of {len(paths)} runs, combined into {Path(key).name} (first: "
        rows.append((html.escape(key), html.escape(what) + f'<a href="{_href(paths[0], root)}">'
                     f"{_rel(paths[0], root)}</a>)"))  # fmt: skip
    return _table(("File", "Contents"), rows) if rows else "<p>No files.</p>"


def write_report_html(
    results_root: str | Path,
    settings: StudySettings,
    confs: Sequence[ConfigurationReport],
    pretraining: Sequence[FigureEntry] = (),
    headline: Path | None = None,
    summary: pd.DataFrame | None = None,
    stats: pd.DataFrame | None = None,
    pdfs: Mapping[str, Path] | None = None,
) -> Path:
    """Write <root>/report.html: settings, runs, headline, statistics, then the configurations' sections,
    the pretraining figures and the file table; every section is listed in the contents with its anchor."""
    root = Path(results_root).resolve()
    pdfs = pdfs or {}
    toc = [("settings", "Study settings"), ("runs", "Runs kept and excluded")]
    body = [f'<h2 id="settings">Study settings</h2>{settings_html(settings)}',
            f'<h2 id="runs">Runs kept and excluded</h2>{runs_html(confs, settings)}']  # fmt: skip
    if headline is not None and headline.is_file():
        toc.append(("headline", "Headline figure"))
        body.append('<h2 id="headline">Headline</h2>' + _figure_html(headline.resolve(), caption_for(headline), root,
                                                                      "headline-figure"))  # fmt: skip
    toc += [("stats", "Study statistics"), ("summary", "Study summary")]
    body += [f'<h2 id="stats">Study statistics</h2>{stats_html(stats)}',
             f'<h2 id="summary">Study summary</h2>{summary_html(summary)}']  # fmt: skip
    for conf in confs:
        toc.append((anchor("conf", conf.name), f"Configuration {conf.name}"))
        body.append(configuration_html(conf, root, pdfs.get(conf.name)))
    pre = _existing(pretraining, root)
    if pre:
        toc.append(("pretraining", "Pretraining"))
        body.append('<section id="pretraining"><h2>Pretraining</h2>'
                    + "".join(_figure_html(p.resolve(), c, root, anchor("pretraining", p.stem)) for p, c in pre)
                    + "</section>")  # fmt: skip
    toc.append(("files", "Files"))
    body.append(f'<h2 id="files">Files</h2>{files_html(root)}')
    contents = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t in toc)
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Report: {html.escape(root.name)}"
        f"</title><style>{CSS}</style></head><body><h1>Report: {html.escape(root.name)}</h1>"
        f'<nav id="contents"><h2>Contents</h2><ul>{contents}</ul></nav>' + "\n".join(body) + "</body></html>"
    )
    out = root / layout.REPORT
    with atomic_open(out, "w") as fh:
        fh.write(page)
    return out
