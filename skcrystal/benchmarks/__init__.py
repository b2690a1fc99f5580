"""Benchmark protocols: matbench-style cross-validation runs with records.

- :func:`run_matbench`: fit and score any estimator on a task's folds,
  resumable per fold, written in matbench's results layout
  (:mod:`skcrystal.benchmarks.matbench`).
- :func:`matbench_task`, :func:`perovskites_task`, :class:`BenchmarkTask`,
  :func:`load_task`: the tasks it runs on.
- :func:`markdown_row`: the line of ``benchmarks/RESULTS.md`` for a record.
- :func:`fold_progress`: the folds stopped or running part way, from their
  checkpoints.
"""
from .matbench import (PUBLISHED, BenchmarkTask, RunResult, fold_progress, load_task,
                       markdown_row, matbench_task, perovskites_task, read_record,
                       run_matbench)

__all__ = ["PUBLISHED", "BenchmarkTask", "RunResult", "fold_progress", "load_task",
           "markdown_row", "matbench_task", "perovskites_task", "read_record", "run_matbench"]
