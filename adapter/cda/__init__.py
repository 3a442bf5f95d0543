"""Safe reading of CDA R2 documents, their datatypes, and document recognition."""

from adapter.cda.reader import parse_letter
from adapter.cda.recognition import Recognition, recognize

__all__ = ["Recognition", "parse_letter", "recognize"]
