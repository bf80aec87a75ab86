"""The analysis functions by their documented module name (MODEL.md §7): each concern has its own module, and
nothing here simulates the network.

Where the functions ANALYSIS.md describes live:

* run exclusion (§2, ``make_exclude_run_csv``), relative changes (§6.4, ``rel_change_for_runs``) and pre/post
  values (§6.5, ``pre_post_for_runs``): :mod:`analysis.changes`;
* tuning curves (§3, ``tuning_curve``): :mod:`analysis.tuning_curves` (simulation) and
  :mod:`analysis.tuning_curve_files` (their CSV files);
* tuning-curve features (§4, ``compute_features``): :mod:`analysis.tuning_features`;
* MVPA and Mahalanobis distances (§5): :mod:`analysis.mvpa_responses` (noisy responses) and
  :mod:`analysis.decoding` (voxel patterns, PCA, decoding);
* statistics (§7): :mod:`analysis.statistics`, written to tables by :mod:`analysis.build_stats`;
* cell layout and task orientations: :mod:`analysis.cells`.

The one function ANALYSIS.md names as it is named here is re-exported.
"""

from analysis.statistics import param_offset_correlations  # noqa: F401  (ANALYSIS.md §7)
