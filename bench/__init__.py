"""The benchmark: `dataarch bench [--rows N] [--bad-ratio R] [--json FILE]`.

Every figure is measured in one run on one throwaway cluster (or DATABASE_URL),
as the median of at least three repetitions, and the targets are ratios
between figures of the same run: these machines are shared and noisy.
"""
