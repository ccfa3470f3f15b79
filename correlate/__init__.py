"""correlate: alerts become incidents (dedup, flapping, topology, root-cause ranking, notifications).

Imports only the warroom core. Built in issue #4.
"""
