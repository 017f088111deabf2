"""Clinical-notes assistant: de-identify a note, and suggest ICD-10-CM codes for it.

    >>> from medassist.assistants.coding import suggest_codes
    >>> [s.code for s in suggest_codes("Type 2 diabetes mellitus with diabetic chronic kidney disease.")][:1]
    ['E11.22']

``suggest_codes`` de-identifies first by default, so the evidence offsets and texts of the
suggestions refer to the redacted note (no PHI leaves this function in a suggestion). Codes are
decision support for a human coder: negated mentions come back as ``excluded``, uncertain or
hypothetical ones as ``flagged``, history and family mentions as Z codes.
"""

from __future__ import annotations

from medassist.exceptions import ConfigError, DataError
from medassist.featurizers.clinical_text import analyze
from medassist.models.icd10 import CodeSuggestion, ICD10Coder
from medassist.privacy.deid import Deidentified, deidentify

__all__ = ["CodeSuggestion", "deidentify_note", "suggest_codes"]

_STATUSES = ("suggested", "flagged", "excluded")


def deidentify_note(text: str, *, known_names: tuple[str, ...] | list[str] = ()) -> Deidentified:
    """The note with its identifiers replaced by typed placeholders (``[NAME]``, ``[DATE]``, ...)."""
    if not isinstance(text, str):
        raise DataError(f"A note must be text (str); got {type(text).__name__}.")
    return deidentify(text, known_names=tuple(known_names))


def suggest_codes(
    text: str, *, top: int = 10, deidentify_first: bool = True, include: tuple[str, ...] = _STATUSES,
) -> list[CodeSuggestion]:
    """ICD-10-CM suggestions for a note, best first: ``suggested``, then ``flagged``, then ``excluded``.

    Args:
        text: the note.
        top: how many suggestions to return (all statuses together).
        deidentify_first: code the de-identified note (the default), so evidence carries no PHI.
        include: the statuses to return.
    """
    if not isinstance(text, str):
        raise DataError(f"A note must be text (str); got {type(text).__name__}.")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ConfigError(f"The 'top' parameter of suggest_codes must be an int >= 1. Got {top!r} instead.")
    bad = [s for s in include if s not in _STATUSES]
    if bad:
        raise ConfigError(f"Unknown status {bad[0]!r} in 'include'. Valid: {', '.join(_STATUSES)}.")
    if deidentify_first:
        text = deidentify(text).text
    return ICD10Coder().suggest(text, top=top, include=tuple(include), doc=analyze(text))
