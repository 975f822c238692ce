"""SLN-Amodal: amodal instance segmentation with the Semantics Layering Network."""
__version__ = "0.1.0"
