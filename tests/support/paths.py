from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CDA_EXAMPLES = SHARED / "cda-examples"
LDL_SES_EXAMPLE = CDA_EXAMPLES / "LDL-SES_2022.01.xml"
N1_PDF_EXAMPLE = CDA_EXAMPLES / "DOC_NON_STRUCTURE_CDA-R2-N1.xml"
LDL_EES_EXAMPLE = CDA_EXAMPLES / "LDL-EES_2022.01.xml"
FIXTURES = REPO / "fixtures"
