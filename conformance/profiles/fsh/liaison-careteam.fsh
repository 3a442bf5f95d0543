// Generated from src/liaison-careteam.yaml by `liaison conformance profiles`.
Profile: LiaisonCareTeam
Parent: https://interop.esante.gouv.fr/ig/fhir/cds/StructureDefinition/cds-ihe-careteam
Id: liaison-careteam
Title: "liaison CareTeam (cercle de soins issu de la lettre de liaison)"
Description: "The patient's care team as liaison builds it from a discharge letter (author, médecin traitant, recipients, responsible professionals, persons to contact). Repeats the constraints of the ANS cercle de soins profile (cds-ihe-careteam) and binds the roles to liaison's role value set (mappings/roles.yaml)."
* meta 1..
* meta.profile 1..
* identifier 1..1
* identifier.system 1..
* identifier.system = "urn:liaison:careteam"
* identifier.value 1..
* status 1..1
* status from http://hl7.org/fhir/ValueSet/care-team-status (required)
* subject 1..1
* subject only Reference(Patient)
* period 1..
* period.start 1..
* participant 1..
* participant.role 1..
* participant.role from urn:liaison:valueset:careteam-roles (required)
* participant.member 1..
* participant.member only Reference(Practitioner or PractitionerRole or RelatedPerson or Organization or Patient)
* participant.period.start 1..
* obeys lia-ct-1
* obeys lia-ct-2

Invariant: lia-ct-1
Description: "Every participant has a role, a member and the date it joined (cds-ihe-careteam)."
Severity: #error
Expression: "participant.all(role.exists() and member.exists() and period.start.exists())"

Invariant: lia-ct-2
Description: "A participant never leaves before it joined."
Severity: #error
Expression: "participant.all(period.end.empty() or period.end >= period.start)"
