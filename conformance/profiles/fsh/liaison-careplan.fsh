// Generated from src/liaison-careplan.yaml by `liaison conformance profiles`.
Profile: LiaisonCarePlan
Parent: http://hl7.eu/fhir/hdr/StructureDefinition/carePlan-eu-hdr
Id: liaison-careplan
Title: "liaison CarePlan (suites de la lettre de liaison)"
Description: "The plan of care liaison derives from an LDL-SES discharge letter: one CarePlan per letter set (setId), updated by later versions. Derived from the HL7 Europe HDR CarePlan; the subject is an FR Core patient, the care team an ANS cercle de soins CareTeam."
* meta 1..
* meta.profile 1..
* identifier 1..1
* identifier ^short = "urn:liaison:careplan | setId of the letter"
* identifier.system 1..
* identifier.system = "urn:liaison:careplan"
* identifier.value 1..
* status 1..
* status from http://hl7.org/fhir/ValueSet/request-status (required)
* intent 1..
* intent = #plan
* category 1..
* category = http://loinc.org#18776-5
* title 1..
* subject 1..1
* subject only Reference(Patient)
* period 1..
* period.start 1..
* author only Reference(Practitioner or PractitionerRole or Organization)
* careTeam 1..1
* careTeam only Reference(CareTeam)
* activity.reference only Reference(MedicationRequest or ServiceRequest or Appointment or DeviceRequest or Procedure or Encounter or NutritionOrder or Task or CommunicationRequest or RequestGroup or VisionPrescription)
* obeys lia-cp-1
* obeys lia-cp-2

Invariant: lia-cp-1
Description: "An active care plan says when it started."
Severity: #error
Expression: "status != 'active' or period.start.exists()"

Invariant: lia-cp-2
Description: "Each activity is either a reference or an inline detail, not both."
Severity: #error
Expression: "activity.all(reference.empty() or detail.empty())"
