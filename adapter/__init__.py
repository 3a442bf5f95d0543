"""liaison: hospital discharge letters (CDA R2 LDL-SES) → FHIR R4 care coordination resources."""

__version__ = "0.1.0"
