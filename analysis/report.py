"""Summary PDF per configuration and the ``report.html`` index of a results folder (binding decision 6).

No LaTeX: the PDF is written with matplotlib ``PdfPages`` (one page per figure with its title and caption);
the HTML page shows every figure by relative path and links every CSV (and PDF) under the results root.
Only existing files are referenced; missing figures are skipped with a warning.
"""

from __future__ import annotations

import html
import logging
import os
import textwrap
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.image as mpimg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from parameters import ParameterError
from training.results_io import atomic_open, atomic_write_text
from util import read_preset

logger = logging.getLogger(__name__)

FigureEntry = tuple[str | Path, str]
"""(PNG path, caption)."""

FIGURE_CAPTIONS: dict[str, str] = {
    "resultsfig": "Training traces of one run: accuracy, losses, offsets, rates, readout, parameters.",
    "offset_pre_post": "Staircase offset and psychometric threshold before (Pre) and after (Post) training.",
    "J_pre_post": "Magnitudes of the recurrent weights before and after training.",
    "r_pre_post": "Maximum and mean firing rates before and after training.",
    "c_f_kappa_f": "Baselines c, feedforward scales f and tanh(κ_f) before and after training.",
    "kappas_Jmidsup": "tanh(κ) of the middle and superficial recurrent weights before and after training.",
    "boxplot_relative_changes_ylim": "Relative changes of the trained parameters (fixed y-range).",
    "boxplot_relative_changes": "Relative changes (%) of the trained parameters; κ: absolute Δtanh(κ).",
    "corr_psychometric_Jraw": "Threshold change vs change of each recurrent weight.",
    "corr_psychometric_Jcombined": "Threshold change vs summed E and I weights and the E/I ratio J_I/J_E.",
    "corr_psychometric_f_c": "Threshold change vs change of f and c.",
    "corr_psychometric_kappa_Jsup": "Threshold change vs change of tanh(κ) of the superficial weights.",
    "tc_fig": "Example tuning curves at every stage.",
    "tc_features": "Tuning-curve features after vs before, one point per cell.",
    "tc_slope": "Slope changes vs preferred orientation relative to 55° and 125°, LOWESS, Mann-Whitney.",
    "corr_triangle": "Correlations among ΔMVPA, ΔE/I ratio and Δthreshold.",
    "combined_corr_triangles": "The four correlation triangles (mid/sup × 55/125).",
    "MVPA_match_paper_fig": "MVPA accuracy before and after training in the layout of Ke et al.",
    "MVPA_scores": "MVPA decoding accuracy (vs 0°) per layer, pre and post training.",
    "Mahal_scores": "Mahalanobis distance to the 0° control per layer, pre and post training.",
}


def caption_for(path: str | Path) -> str:
    """Caption of a figure from its file name (longest matching known prefix), else the file name."""
    stem = Path(path).stem
    matches = [key for key in FIGURE_CAPTIONS if stem.startswith(key)]
    return FIGURE_CAPTIONS[max(matches, key=len)] if matches else stem


def figures_with_captions(folder: str | Path, pattern: str = "*.png") -> list[FigureEntry]:
    """All PNGs of a folder (sorted) paired with their captions."""
    return [(p, caption_for(p)) for p in sorted(Path(folder).glob(pattern))]


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


def write_summary_pdf(figure_paths_with_captions: Sequence[FigureEntry], pdf_path: str | Path) -> Path:
    """One PDF page per existing figure (title = file name, caption below), after a contents page."""
    pdf_path = Path(pdf_path)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    entries = _existing(figure_paths_with_captions)
    contents = "; ".join(p.name for p, _ in entries) or "no figures"
    # written to a temporary that replaces the PDF only when every page is in (never a PDF missing pages)
    with atomic_open(pdf_path, "wb") as fh, PdfPages(fh) as pdf:
        pdf.savefig(_page(pdf_path.stem, f"Figures: {contents}"))
        for path, caption in entries:
            pdf.savefig(_page(path.name, caption, path))
        pdf.infodict()["Title"] = pdf_path.stem
    return pdf_path


def _href(path: Path, root: Path) -> str:
    """URL-quoted POSIX path of a file relative to root."""
    return urllib.parse.quote(Path(os.path.relpath(path, root)).as_posix())


def _figure_html(path: Path, caption: str, root: Path) -> str:
    """A <figure> block for one image."""
    href = _href(path, root)
    name = html.escape(Path(os.path.relpath(path, root)).as_posix())
    return (
        f'<figure><a href="{href}"><img src="{href}" alt="{name}"></a>'
        f"<figcaption><b>{name}</b>: {html.escape(caption)}</figcaption></figure>"
    )


def _file_list_html(title: str, files: Sequence[Path], root: Path) -> str:
    """A section listing links to files."""
    items = "".join(f'<li><a href="{_href(f, root)}">{html.escape(_href(f, root))}</a></li>' for f in files)
    return f"<h2>{html.escape(title)}</h2><ul>{items or '<li>none</li>'}</ul>"


def _settings_html(root: Path) -> str:
    """The study's parameter preset (from its parameters.py), or nothing outside a study folder."""
    path = root / "parameters.py"
    if not path.is_file():
        return ""
    try:
        preset = read_preset(path)
    except ParameterError as error:
        preset = f"unreadable ({error})"
    return f"<p>Settings: parameter preset <b>{html.escape(preset)}</b> (see the README, 'Presets').</p>"


def write_report_html(results_root: str | Path, sections: Mapping[str, Sequence[FigureEntry]]) -> Path:
    """Write <root>/report.html: existing figures with captions per section, links to CSVs/PDFs."""
    root = Path(results_root).resolve()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Analysis report</title>",
        "<style>body{font-family:sans-serif;margin:2em} img{max-width:100%;border:1px solid #ccc}"
        " figure{margin:1.5em 0} figcaption{margin-top:.3em}</style></head><body>",
        f"<h1>Analysis report: {html.escape(root.name)}</h1>",
        _settings_html(root),
    ]
    for title, entries in sections.items():
        figures = _existing(entries, root)
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts += [_figure_html(p.resolve(), caption, root) for p, caption in figures] or ["<p>no figures</p>"]
    parts.append(_file_list_html("CSV files", sorted(root.rglob("*.csv")), root))
    parts.append(_file_list_html("PDF files", sorted(root.rglob("*.pdf")), root))
    parts.append("</body></html>")
    out = root / "report.html"
    atomic_write_text(out, "\n".join(parts))
    return out
