"""tumorscope: find and characterise brain tumours in MRI."""

from tumorscope.errors import TumorscopeError
from tumorscope.io import Scan, read_scan

__version__ = "0.1.0"
__all__ = ["Scan", "TumorscopeError", "__version__", "read_scan"]
