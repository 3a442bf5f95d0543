from tests.support.medplum import medplum_base_url, medplum_server  # noqa: F401 (fixtures)
