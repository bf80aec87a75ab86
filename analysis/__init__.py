"""Model-independent analysis of the perceptual-learning results: features, MVPA, statistics, figures."""
