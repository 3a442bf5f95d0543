// Generated from src/liaison-communication.yaml by `liaison conformance profiles`.
Profile: LiaisonCommunication
Parent: http://hl7.org/fhir/StructureDefinition/Communication
Id: liaison-communication
Title: "liaison Communication (notification de sortie à un destinataire)"
Description: "The notice liaison sends each recipient of a discharge letter: who, about which patient and letter (DocumentReference), with the follow-up summary as payload. Recipients are FR Core / Annuaire Santé practitioners; the document follows the CI-SIS (LDL-SES)."
* identifier 1..1
* identifier.system 1..
* identifier.system = "urn:liaison:communication"
* identifier.value 1..
* status 1..
* status from http://hl7.org/fhir/ValueSet/event-status (required)
* category 1..
* category = http://terminology.hl7.org/CodeSystem/communication-category#notification
* subject 1..
* subject only Reference(Patient)
* about 1..
* about only Reference(DocumentReference or CarePlan)
* recipient 1..
* recipient only Reference(Practitioner or PractitionerRole or RelatedPerson or Organization or CareTeam)
* sender only Reference(Practitioner or PractitionerRole or Organization)
* payload 1..
* obeys lia-com-1
* obeys lia-com-2

Invariant: lia-com-1
Description: "A sent notification says when it was sent."
Severity: #error
Expression: "status != 'completed' or sent.exists()"

Invariant: lia-com-2
Description: "Every payload carries content (text, attachment or reference)."
Severity: #error
Expression: "payload.all(content.exists() or contentString.exists() or contentAttachment.exists() or contentReference.exists())"
