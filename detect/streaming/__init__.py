"""Layer-1 streaming statistical detectors: fast, causal, pure Python/NumPy, no training phase."""
