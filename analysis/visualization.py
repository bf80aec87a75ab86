"""The figures of the analysis by their documented module name (MODEL.md §7): the figure functions live in
:mod:`analysis.figures`, one module per topic, and draw the tables the analysis wrote.

Where each figure of ANALYSIS.md §8 lives:

* F1 per-run traces, F2 pre/post values (``barplots_from_csvs``), F3 relative-change boxes
  (``boxplots_from_csvs``), F4 parameter-offset correlations: :mod:`analysis.figures.training`;
* F5 example tuning curves (``plot_tuning_curves``), F6 feature scatter (``plot_tc_features``), F7 slope
  changes: :mod:`analysis.figures.tuning`;
* F8 correlation triangles (``plot_corr_triangles``), F9 MVPA and Mahalanobis scores
  (``plot_MVPA_or_Mahal_scores``): :mod:`analysis.figures.decoding`;
* the study headline and the comparison of studies: :mod:`analysis.figures.headline`;
* the shared style: :mod:`analysis.figures.style`.

The two figure functions ANALYSIS.md names as they are named here are re-exported.
"""

from analysis.figures.decoding import plot_corr_triangle  # noqa: F401  (ANALYSIS.md §8, F8)
from analysis.figures.training import plot_param_offset_correlations  # noqa: F401  (ANALYSIS.md §8, F4)
