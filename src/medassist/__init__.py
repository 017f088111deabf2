"""medassist: a local-first clinical AI workbench (decision support, not a medical device)."""

__version__ = "0.1.0"
