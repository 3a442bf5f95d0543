"""liaison's embedded shared patient record: a FHIR R4 server (JSON) with access control.

Public surface: `adapter.record.api.router` (prefix `/fhir`), `adapter.record.app.
create_record_app()`, `adapter.record.repository.Repository` (transaction, read, search, …),
`adapter.record.pull.changes_since()`, `adapter.record.access` (who may read / write what).
"""
