"""liaison's embedded shared patient record: a FHIR R4 server (JSON) with access control.

Public surface: `adapter.record.repository.Repository` (transaction, read, search, …),
`adapter.record.pull.pull()` (the change feed, `feed.py`), `adapter.record.access` (who may
read what; who may write: `adapter.auth.rules`). Its HTTP routes are `adapter.api.record_routes`
(`/fhir`), served alone by `adapter.api.record_app.create_record_app()`.
"""
