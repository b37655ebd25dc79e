"""nntrain: config-driven PyTorch training from the command line.

Importing the package stays cheap (no torch): `nntrain --help` and config composition
should not pay for libraries a run has not asked for yet.
"""

__version__ = "0.1.0"
