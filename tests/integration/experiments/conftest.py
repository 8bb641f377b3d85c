"""The control-plane suite's helpers (Scheduler, cli, write, ...) for the experiment tests."""
import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "controlplane_conftest", os.path.join(HERE, "..", "controlplane", "conftest.py"))
_cp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cp)
globals().update({k: v for k, v in vars(_cp).items() if not k.startswith("__")})
