"""Reproductions of the five source works: ``medsr reproduce N``.

- :mod:`~medsr.reproduce.spec`: typed descriptions (data, models, evaluation, profiles);
- :mod:`~medsr.reproduce.works`: the five works, explicitly;
- :mod:`~medsr.reproduce.papers`: the published numbers (``papers/N.yaml``) and the checks
  that flag implausible ones;
- :mod:`~medsr.reproduce.runner`: prepare, train, evaluate, reader study, report (resumable);
- :mod:`~medsr.reproduce.thickthin`: work 5's synthesised thick/thin DICOM pairs;
- :mod:`~medsr.reproduce.report`: the report beside the paper's tables.

Importing this package imports no torch; the runner imports what it needs when it runs.
"""

from __future__ import annotations

from medsr.reproduce.runner import ReproduceOptions, ReproduceResult, reproduce
from medsr.reproduce.works import WORKS, get_work

__all__ = ["WORKS", "ReproduceOptions", "ReproduceResult", "get_work", "reproduce"]
