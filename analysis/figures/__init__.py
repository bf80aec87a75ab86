"""Figures of the analysis (ANALYSIS.md §8, F1-F9, and the study headline), one module per topic.

* :mod:`analysis.figures.style`: the shared rc style, colours, figure creation and saving;
* :mod:`analysis.figures.training`: F1 run traces, F2 pre/post values, F3 relative changes, F4 correlations;
* :mod:`analysis.figures.tuning`: F5 example tuning curves, F6 feature scatter, F7 slope changes;
* :mod:`analysis.figures.decoding`: F8 correlation triangles, F9 MVPA and Mahalanobis scores;
* :mod:`analysis.figures.headline`: the study headline and the comparison of studies.

A figure function takes tables (DataFrames read from the analysis' CSV files: the statistics it shows are
computed by the stats part, :mod:`analysis.build_stats`) and an output path, draws, writes one PNG and returns
the path. It computes no statistic itself.
"""
