"""The Numenta Anomaly Benchmark: corpus loading, a faithful reimplementation of its scorer, the bench."""
