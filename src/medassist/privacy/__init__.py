"""Privacy: encryption of stored PHI fields and keeping PHI out of logs (``crypto``); the
differential-privacy ledger (``ledger``)."""
