"""CDA discharge letters → FHIR R4 transaction Bundles (the mapping engine)."""

from adapter.mapping.engine import Conversion, convert_letter
from adapter.mapping.summary import LetterSummary

__all__ = ["Conversion", "LetterSummary", "convert_letter"]
