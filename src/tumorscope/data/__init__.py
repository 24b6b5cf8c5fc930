"""Datasets (registered by name), patient-level splits and the torch datasets."""

from tumorscope.data import (  # noqa: F401  (register the built-ins)
    brats,
    brats_slices,
    figshare,
    imagefolder,
    lgg,
    mixed,
    synthetic,
)
from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.registry import dataset_names, load_index, register_dataset

__all__ = ["DatasetIndex", "Record", "dataset_names", "load_index", "register_dataset"]
