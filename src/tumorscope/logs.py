"""Logging for the command line and the server: one line per user error; what the imaging
libraries print about a bad file (pydicom tracebacks, tifffile warnings, NumPy overflow
warnings while rescaling) is kept for the debug log (``-v``)."""

from __future__ import annotations

import logging
import warnings

NOISY_LIBRARIES = ("pydicom", "tifffile", "nibabel", "PIL", "h5py", "imagecodecs")
_library_level = logging.WARNING  # until configure() is called (library use: unchanged)


def quiet_libraries() -> None:
    """Apply the chosen level to the imaging libraries' loggers; readers call it after their
    (lazy) import, since pydicom sets its own logger's level when imported."""
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(_library_level)


def configure(verbose: bool = False) -> None:
    """Root logging at INFO (DEBUG with ``verbose``); library noise only when verbose."""
    global _library_level
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    _library_level = logging.DEBUG if verbose else logging.CRITICAL
    quiet_libraries()
    if not verbose:  # e.g. "overflow encountered in multiply" from a DICOM's rescale slope
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"tumorscope\.io")
        warnings.filterwarnings("ignore", module=r"(tifffile|pydicom|nibabel)")
