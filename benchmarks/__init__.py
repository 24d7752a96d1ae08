"""Benchmarks of salescycle against bare baselines, run by ``make bench``.

Each workload is measured as a ratio: the full application and a bare Starlette +
asyncpg app that runs the same SQL are served the same way, in the same run, and driven
alternately by one load generator process. Results and their limits are recorded in
``benchmarks/RESULTS.md``. Nothing here asserts a time; the test suite only runs the
harness in its smoke mode.
"""
