"""Readers of annotation formats into ``AnnotationSet``s. Importing this package registers the
upstream dataset types (COCOA, D2SA, KINS, SLN), each in its own file (``data_types.py``)."""
from . import cocoa, d2sa, kins, sln_npz  # noqa: F401  (registration)
