"""Where a batch's jobs run: the local process pool (the default) or a Dask cluster.

`grade_class` (batch.py) plans the jobs, resumes from the store and alone writes every file; a
backend only runs jobs somewhere and hands back one plain result per job (see base.Backend).
"""

from autograder.grading.backends.base import Backend, BackendUnavailable, error_result

__all__ = ["Backend", "BackendUnavailable", "error_result"]
