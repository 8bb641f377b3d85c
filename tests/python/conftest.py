"""pytest setup for the Python bindings: import them from the source tree.

The shared library is found through SELDON_LIB (full path of libseldon.so),
else ctypes.util.find_library("seldon"). When it cannot be found the test
modules fail to import, with a message saying so: nothing is skipped.
"""

import os
import sys

_BINDINGS = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python")
)
if _BINDINGS not in sys.path:
    sys.path.insert(0, _BINDINGS)


def pytest_report_header(config):
    try:
        import seldon
        from seldon import _lib
    except OSError as e:
        return "libseldon: NOT LOADED: %s" % e
    return "libseldon %s from %s (bindings: %s)" % (seldon.version(), _lib.lib._seldon_path, _BINDINGS)
