"""liaison's embedded shared patient record: a FHIR R4 server (JSON) with access control.

Public surface: `adapter.record.api.router` (prefix `/fhir`), `adapter.record.app.
create_record_app()`, `adapter.record.repository.Repository` (transaction, read, search, …),
`adapter.record.pull.pull()` (the change feed, `feed.py`), `adapter.record.access` (who may
read what; who may write: `adapter.auth.rules`).
"""
