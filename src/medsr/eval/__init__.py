"""Evaluation: ``medsr evaluate`` (one method, one row per image) and ``medsr benchmark``
(several methods, tables in the style of the source works, figure grids, paired tests).

Modules:

* :mod:`~medsr.eval.methods`: :class:`Method`, resolved and run by :mod:`medsr.infer`;
* :mod:`~medsr.eval.regions`: regions of interest (attached mask, threshold, z-score proxy);
* :mod:`~medsr.eval.evaluate`: the loop over a manifest's slices, one row per method and
  image (:func:`run_evaluation`);
* :mod:`~medsr.eval.results`: the per-image CSV, written row by row and resumable;
* :mod:`~medsr.eval.stats`: mean ± std and the paired Wilcoxon signed-rank test;
* :mod:`~medsr.eval.tables`: summaries, tables with the best in bold (rendered by
  :mod:`medsr.document`);
* :mod:`~medsr.eval.figures`: figure grids with a zoomed inset and error maps;
* :mod:`~medsr.eval.config`, :mod:`~medsr.eval.report`, :mod:`~medsr.eval.benchmark`: the
  benchmark's YAML schema, report and runner.

Tables and figures live here rather than in a separate ``report`` package because they
only ever render evaluation results; the reader study has its own report module. See
docs/evaluation.md.
"""

from __future__ import annotations

from medsr.eval.benchmark import BenchmarkOutput, run_benchmark
from medsr.eval.config import BenchmarkConfig, load_config, parse_config
from medsr.eval.evaluate import EvalSettings, Evaluator, result_columns, run_evaluation
from medsr.eval.methods import Method, load_method, method_from_module
from medsr.eval.regions import Region, parse_region
from medsr.eval.results import ResultsFile, read_results
from medsr.eval.stats import describe, paired_wilcoxon

__all__ = [
    "BenchmarkConfig",
    "BenchmarkOutput",
    "EvalSettings",
    "Evaluator",
    "Method",
    "Region",
    "ResultsFile",
    "describe",
    "load_config",
    "load_method",
    "method_from_module",
    "paired_wilcoxon",
    "parse_config",
    "parse_region",
    "read_results",
    "result_columns",
    "run_benchmark",
    "run_evaluation",
]
