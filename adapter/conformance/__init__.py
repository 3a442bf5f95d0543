"""Conformance: validate incoming CDA letters (XSD + CI-SIS schematrons, `cda_validation`),
check produced resources against liaison's profiles (`profiles`), and run conformance
scenarios against any FHIR server or liaison itself (`runner`). Data: the repo's conformance/.
"""
