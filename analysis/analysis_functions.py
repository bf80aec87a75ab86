"""The analysis functions by their documented module name: thin re-exports of the modules that own them.

Each concern has its own module (nothing here simulates the network; they work on arrays and DataFrames):

* :mod:`analysis.cells`: cell layout and task orientations derived from ``Parameters``;
* :mod:`analysis.tuning_curve_files`: the tuning-curve CSV files;
* :mod:`analysis.tuning_features`: tuning-curve features;
* :mod:`analysis.decoding`: voxel patterns, PCA, MVPA decoding and Mahalanobis distances;
* :mod:`analysis.changes`: run exclusion, relative parameter changes and pre/post values;
* :mod:`analysis.statistics`: correlations, paired tests, ANOVA, sliding Mann-Whitney, LOWESS, triangles.
"""

from analysis.cells import (  # noqa: F401
    CELL_TYPES,
    CONTROL_ORI,
    DEFAULT_ORIENTATIONS,
    LAYER_NAMES,
    CellLayout,
    TaskOrientations,
    cell_info,
    cell_names,
    wrap_orientation_difference,
)
from analysis.changes import (  # noqa: F401
    NON_VALUE_COLUMNS,
    add_derived_columns,
    change_column,
    changes_from_endpoints,
    endpoints_for_runs,
    excluded_runs,
    exclusion_table,
    is_kappa_column,
    pre_post_values,
    relative_changes,
    run_relative_changes,
    run_table,
    time_indices,
    value_columns,
    window_endpoints,
    write_exclusion_files,
)
from analysis.decoding import (  # noqa: F401
    E_WEIGHT,
    I_WEIGHT,
    SCORE_TABLES,
    RunScores,
    add_readout_noise,
    gaussian_kernel_1d,
    learning_modulation_indices,
    lmi_frame,
    mahal,
    mahal_condition_scores,
    mahal_details_frame,
    mahal_leave_one_out,
    mvpa_accuracy,
    mvpa_mahal_for_run,
    pca_reduce,
    scores_long_frame,
    smoothing_matrix,
    softplus,
    voxel_patterns,
    write_scores_csvs,
)
from analysis.statistics import (  # noqa: F401
    CORRELATION_PREFIXES,
    correlation_parameters,
    lowess_by_side,
    mvpa_percent_change,
    paired_tests,
    param_offset_correlations,
    pearson_finite,
    rm_anova,
    significance_color,
    sliding_mann_whitney,
    sliding_window_starts,
    slope_change_table,
    triangle_data,
    write_stats_csv,
)
from analysis.tuning_curve_files import (  # noqa: F401
    TC_ID_COLUMNS,
    read_complete_tuning_curves,
    read_tuning_curves_csv,
    stage_blocks,
    tuning_curve_frame,
    write_tuning_curves_csv,
)
from analysis.tuning_features import (  # noqa: F401
    INTERP_STEP,
    SLOPE_ORIS,
    TC_ORIENTATIONS,
    feature_matrix,
    feature_names,
    interpolate_tuning_curves,
    interpolation_grid,
    tuning_curve_features,
    tuning_curve_features_table,
)
