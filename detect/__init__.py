"""Detection stage: streaming anomaly detectors, their decision logic, and the NAB bench.

Every detector follows the contract in :mod:`detect.base`: it sees one point at a time, never looks
ahead, and returns a score in ``[0, 1]`` where higher is always more anomalous.
"""
