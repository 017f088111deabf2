"""Privacy: encryption of stored PHI fields and keeping PHI out of logs (``crypto``)."""
