"""Imported once by the judge's fork server: each judge child starts with TensorFlow and every check loaded.

Importing TensorFlow and Keras costs about 5 s of CPU; a child that imported them itself paid it for
every notebook it judged (most checks load a recorded Keras model). Forking after the import is safe
because the import starts no threads: TensorFlow creates its thread pools at the first operation,
which only ever runs in a child. Start-up lines go through cnnvis.quiet, not to the worker's stderr.
"""

from __future__ import annotations

from cnnvis.quiet import load_tensorflow

load_tensorflow()
import keras  # noqa: E402,F401  (Keras 3 reads its backend when imported: after TensorFlow)

from autograder.checks import load_all  # noqa: E402

load_all()
