"""Keep TensorFlow's own log lines off the command line's stderr; `python -m pneumonia --verbose` shows them.

TF_CPP_MIN_LOG_LEVEL=3 hides what TensorFlow logs once it is running (e.g. "failed call to cuInit"), but
TensorFlow 2.21 writes a few lines while its shared libraries load, before absl logging is set up, whatever
that variable says ("All log messages before absl::InitializeLog() ...", "cudart_stub.cc ... Could not find
cuda drivers"). So the first `import tensorflow` also runs with file descriptor 2 pointed at /dev/null.
Python's own stderr writes after that import (our `warning:` and `error:` lines, tracebacks) are untouched.
Nothing here imports TensorFlow: the import stays lazy, and commands that never need it stay fast.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import sys

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
PACKAGE_LOG_LEVEL = "2"
"""What pneumonia/__init__.py puts in TF_CPP_MIN_LOG_LEVEL when the user has not set it."""


@contextlib.contextmanager
def stderr_fd_silenced():
    """Point file descriptor 2 at /dev/null for the duration (C/C++ writes included); restore it after."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no usable stderr at all: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _SilencedLoader(importlib.abc.Loader):
    """Runs the real loader of `tensorflow` with stderr silenced, and leaves the real loader on the module."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        with stderr_fd_silenced():
            self.loader.exec_module(module)


class SilentTensorFlowImport(importlib.abc.MetaPathFinder):
    """On the first `import tensorflow` (keras imports it too), find it with the other finders and load it
    through _SilencedLoader; then take itself off sys.meta_path."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        uninstall_import_hook()
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _SilencedLoader(spec.loader)
        return spec


def uninstall_import_hook() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, SilentTensorFlowImport)]


def quiet_logs(verbose: bool) -> None:
    """Hide TensorFlow's, XLA's and absl's log lines unless `verbose`; with it, let TensorFlow log everything.

    A TF_CPP_MIN_LOG_LEVEL the user chose (any value other than the package's own default) is kept either way.
    """
    level = os.environ.get(LOG_LEVEL_VARIABLE, PACKAGE_LOG_LEVEL)
    if verbose:
        uninstall_import_hook()
        if level == PACKAGE_LOG_LEVEL:
            os.environ[LOG_LEVEL_VARIABLE] = "0"
        return
    if level == PACKAGE_LOG_LEVEL:
        os.environ[LOG_LEVEL_VARIABLE] = "3"
    if "tensorflow" not in sys.modules and not any(isinstance(f, SilentTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, SilentTensorFlowImport())
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging  # TensorFlow's and Keras' Python-side logger
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
