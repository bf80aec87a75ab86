"""What each figure and table of an analysed results folder shows: the figure captions (by file-name prefix,
with the number of runs shown) and one line per CSV file name, for the summary PDFs and the report page."""

from __future__ import annotations

from pathlib import Path

from store import layout

FigureEntry = tuple[str | Path, str]
"""(PNG path, caption)."""

RUNS = "{n} runs"
POINTS = "one point per run"
BARS = "bars: mean over runs; dots joined by lines: single runs (no error bars)"
BOXES = "boxes: quartiles and median, whiskers: 1.5 IQR; dots: single runs"
FIGURE_CAPTIONS: dict[str, str] = {
    "headline": "Per configuration: relative change over stage 2 (% of |J|) of the inhibitory and excitatory "
    "weights of the middle and superficial layer, lines joining one run's values, black marks the medians, "
    "with the paired Wilcoxon test of sup vs mid below; staircase offset and psychometric threshold before "
    "and after stage 2 (thresholds not measured drawn apart).",
    "resultsfig": "Training traces of one run over all stages (dashed lines: stage changes): accuracy, losses, "
    "offsets, rates, readout and parameters.",
    "offset_pre_post": "Staircase offset and psychometric threshold at the first (pre) and last (post) stage-2 "
    f"row, {RUNS}; {BARS}. Thresholds not measured (180° or NaN) are counted, not drawn.",
    "J_pre_post": f"|J| of the eight recurrent weights at the first and last stage-2 row, {RUNS}; {BARS}.",
    "r_pre_post": f"Maximum and mean firing rates at the first and last stage-2 row, {RUNS}; {BARS}.",
    "c_f_kappa_f": f"Baselines c, feedforward scales f and tanh(κ_f) at the first and last stage-2 row, {RUNS}; "
    f"{BARS}.",
    "kappas_Jmidsup": f"tanh(κ) of the middle and superficial recurrent weights at the first and last stage-2 row, "
    f"{RUNS}; {BARS}; y-range from the data.",
    "boxplot_relative_changes_ylim": f"Relative changes over stage 2 (%, κ: Δtanh(κ)) on the reference's fixed "
    f"y-range (−60 % to 100 %, κ: ±2), {RUNS}; {BOXES}.",
    "boxplot_relative_changes": f"Relative changes of the trained parameters (%; κ: absolute Δtanh(κ)), {RUNS}; "
    f"{BOXES}.",
    "corr_psychometric_Jraw": f"Threshold change vs change of each recurrent weight, {RUNS}, {POINTS}; line: "
    "least-squares fit, r and p: Pearson.",
    "corr_psychometric_Jcombined": f"Threshold change vs summed E and I weights and the E/I ratio J_I/J_E, {RUNS}, "
    f"{POINTS}; Pearson r and p.",
    "corr_psychometric_f_c": f"Threshold change vs change of f and c, {RUNS}, {POINTS}; Pearson r and p.",
    "corr_psychometric_kappa_Jsup": f"Threshold change vs change of tanh(κ) of the superficial weights, {RUNS}, "
    f"{POINTS}; Pearson r and p.",
    "tc_fig": f"Example tuning curves (one cell per panel, mean over the {RUNS}) at every stage.",
    "tc_features": "Tuning-curve features after vs before training, one point per cell and run; diagonal: no change.",
    "tc_slope": "Slope changes vs preferred orientation relative to 55° and 125° (LOWESS lines), sliding "
    "Mann-Whitney tests.",
    "corr_triangle": f"Correlations among ΔMVPA, ΔE/I ratio and Δthreshold, {RUNS}, {POINTS}; Pearson r and p.",
    "combined_corr_triangles": f"The four correlation triangles (mid/sup × 55°/125°), {RUNS}.",
    "MVPA_match_paper_fig": f"MVPA accuracy before and after training in the layout of Ke et al., {RUNS}; dashed "
    "line: chance (0.5).",
    "MVPA_scores": f"MVPA decoding accuracy (vs 0°) per layer, pre and post training, {RUNS}; {BOXES}; dashed "
    "line: chance (0.5).",
    "Mahal_scores": f"Mahalanobis distance to the 0° control per layer, pre and post training, {RUNS}; {BOXES}.",
}

CSV_DESCRIPTIONS: dict[str, str] = {
    layout.PRETRAINING_RESULTS: "every pretraining step (stages 0 and 1) of every run: metrics and parameters",
    layout.PRETRAINING_RESULTS_VAL: "pretraining probe steps with the accuracy at every probe offset",
    layout.TRAINING_RESULTS: "every stage-2 step of every run (after its stage-1 steps where stage 1 runs in the "
    "training job): metrics, parameters, staircase offset, thresholds",
    layout.TRAINING_RESULTS_VAL: "stage-2 probe steps (every acc_check_freq-th and the last; after the stage-1 ones "
    "where stage 1 runs in the training job) with the accuracy at every probe offset",
    layout.ORIMAP: "orientation map of each run (one value per grid point, degrees)",
    layout.INITIAL_PARAMETERS: "gE, gI and the learning rate of each run and pretraining stage",
    layout.INIT_READOUT_PARAMS: "initial readout weights of each run",
    layout.EXCLUDED_RUNS: "runs whose pretraining ended outside the accepted threshold range",
    layout.EXCLUDED_CONF: "runs excluded from this configuration's analysis (one index per line)",
    layout.EXCLUDED_ALL: "runs excluded by at least one configuration",
    layout.EXCLUDED_DETAILS: "excluded runs per configuration",
    layout.PRETRAINING_TC: "tuning curves of every cell, stages 0 and 1, every run",
    layout.CONF_TC: "tuning curves of every cell after stage 2, retained runs",
    layout.PRETRAINING_FEATURES: "tuning-curve features (width, slopes, preferred orientation...), "
    "stages 0 and 1",
    layout.CONF_FEATURES: "tuning-curve features after stage 2",
    layout.REL_PRETRAIN: "per run: relative change (%) of every column over pretraining",
    layout.REL_TRAIN: "per run: relative change (%) of every column over stage 2 (κ: Δtanh(κ))",
    layout.table_name("MVPA_scores"): "MVPA decoding accuracy per run, layer, stage and orientation",
    layout.table_name("Mahal_scores"): "Mahalanobis distance per run, layer, stage and orientation",
    layout.table_name("Mahal_details"): "Mahalanobis distances of every condition",
    layout.table_name("LMI"): "learning modulation indices from the Mahalanobis distances",
    layout.STATS_PAIRED: "paired t and Wilcoxon tests of MVPA and Mahalanobis scores, stage 1 vs 2",
    layout.STATS_ANOVA: "repeated-measures ANOVA score ~ stage × orientation per layer",
    layout.STATS_CORR: "Pearson correlations of parameter changes with the threshold change",
    layout.STATS_TRIANGLES: "Pearson correlations of ΔMVPA, ΔE/I ratio and Δthreshold",
    layout.STATS_CORR_FITS: "least-squares lines (95 % bootstrap bands) of the threshold change on each "
    "parameter change, drawn by the correlation figures",
    layout.TRIANGLE_DATA: "per run: ΔMVPA, ΔE/I ratio and Δthreshold of each correlation triangle",
    layout.STATS_TRIANGLE_FITS: "least-squares lines (95 % bootstrap bands) of the correlation triangles' edges",
    layout.STATS_SLOPE_LOWESS: "LOWESS fits of the slope changes vs preferred orientation, stage 1 to 2",
    layout.STATS_SLOPE_MANN_WHITNEY: "sliding Mann-Whitney tests of the slope changes at 55° vs 125°, stage 1 to 2",
    layout.PRETRAINING_STATS_SLOPE_LOWESS: "LOWESS fits of the slope changes vs preferred orientation, stage 0 "
    "to 1",
    layout.PRETRAINING_STATS_SLOPE_MANN_WHITNEY: "sliding Mann-Whitney tests of the slope changes at 55° vs "
    "125°, stage 0 to 1",
    layout.STUDY_SUMMARY: "per configuration: runs kept and excluded, median [IQR] change of |J|, f, c and the "
    "offsets before and after stage 2",
    layout.STUDY_STATS: "per configuration: paired Wilcoxon tests (sup vs mid, E/I balance, post vs pre)",
}
"""One line per CSV file name (the report's annotated file table)."""


def caption_for(path: str | Path, n: int | None = None) -> str:
    """Caption of a figure from its file name (longest matching known prefix), with the number of runs."""
    stem = Path(path).stem
    matches = [key for key in FIGURE_CAPTIONS if stem.startswith(key)]
    if not matches:
        return stem
    text = FIGURE_CAPTIONS[max(matches, key=len)]
    return text.replace("{n} runs", f"{n} runs" if n is not None else "all shown runs").replace(
        "the {n} runs", "the runs"
    )


def figures_with_captions(folder: str | Path, pattern: str = "*.png", n: int | None = None) -> list[FigureEntry]:
    """All PNGs of a folder (sorted) paired with their captions."""
    return [(p, caption_for(p, n)) for p in sorted(Path(folder).glob(pattern))]
