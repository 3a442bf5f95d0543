"""All settings in one place, read from `LIAISON_*` environment variables (pydantic-settings).

Every command and test can point liaison at its own data by setting `LIAISON_DATA_DIR`
(and, when needed, `LIAISON_DATABASE_URL` / `LIAISON_TARGET_URL`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUDIENCE = "liaison"  # the `aud` of local tokens when none is configured
_PACKAGED_DATA = Path(__file__).resolve().parent / "_data"


def _data_folder(name: str) -> Path:
    """`mappings/` and `conformance/`: repo root in a checkout, inside the wheel otherwise."""
    in_checkout = _REPO_ROOT / name
    return in_checkout if in_checkout.is_dir() else _PACKAGED_DATA / name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIAISON_", extra="ignore")

    data_dir: Path = Field(default=Path(".liaison"), description="where liaison keeps its state")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite file in the data dir"
    )
    target_url: str | None = Field(
        default=None,
        description="FHIR base URL of the shared record to push to; default the embedded /fhir",
    )
    mappings_dir: Path = Field(default_factory=lambda: _data_folder("mappings"))
    conformance_dir: Path = Field(default_factory=lambda: _data_folder("conformance"))
    max_letter_bytes: int = Field(default=20 * 1024 * 1024, description="largest CDA accepted")
    # reads of the record a server process works on at once, and how many may wait (beyond:
    # 503 with Retry-After), so that readers never hold hospitals' letters up
    read_concurrency: int = Field(default=4, ge=1)
    read_queue: int = Field(default=256, ge=0)
    public_base_url: str = Field(
        default="http://127.0.0.1:8080", description="how this server is reached (Location, links)"
    )

    # push target authentication (OAuth2 client credentials / SMART backend services)
    target_token_url: str | None = None
    target_client_id: str | None = None
    target_client_secret: str | None = None
    target_private_key: Path | None = Field(
        default=None, description="PEM key for a private_key_jwt client assertion"
    )
    target_scope: str = "system/*.rs system/*.cud"
    push_timeout_seconds: float = 30.0
    push_max_attempts: int = 8

    # access control of our own API
    auth_required: bool = True
    token_issuer: str = "liaison-local"
    jwks_url: str | None = Field(
        default=None, description="trust an external issuer (e.g. Pro Santé Connect) by its JWKS"
    )
    validation_mode: str = Field(
        default="report", description="incoming CDA schematron validation: off | report | strict"
    )
    # people logging in to the coordinator's page (OpenID Connect, e.g. Pro Santé Connect)
    oidc_issuer: str | None = Field(
        default=None, description="the identity provider (discovery at "
        "{issuer}/.well-known/openid-configuration); unset: no login, bearer tokens only")
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str = Field(
        default="openid scope_all",
        description="scopes asked (Pro Santé Connect: openid scope_all)")
    oidc_acr_values: str | None = Field(
        default=None, description="level of assurance asked and required of the ID token's "
        "`acr` (Pro Santé Connect: eidas1); unset: not asked")
    session_hours: float = Field(
        default=8.0, description="a login session ends this long after it began, whatever "
        "happens meanwhile")
    cisis_dir: Path = Field(
        default_factory=lambda: _REPO_ROOT.parent / "shared" / "cda-examples",
        description="CI-SIS artefacts (schematrons/, jeuxDeValeurs/, infrastructure/cda/)",
    )

    # pusher tuning: lease so a crashed worker's entries are taken over, backoff bounds
    push_lease_seconds: float = 60.0
    push_backoff_base_seconds: float = 1.0
    push_backoff_max_seconds: float = 300.0
    push_workers: int = 2
    push_gather_seconds: float = Field(
        default=0.25,
        description="after a batch smaller than a full one, wait this long for more letters "
        "before the next (targets taking several letters at once: the embedded record); a "
        "letter arriving alone is sent at once",
    )
    push_in_server: bool = Field(default=True, description="run the pusher inside `liaison serve`")
    push_process: bool = Field(
        default=True,
        description="`liaison serve` delivers from a process of its own (the second core); "
        "false: from threads of the server process",
    )
    target_max_entries: int | None = Field(
        default=None, description="split bigger transactions for targets that cap them (Medplum: 8)"
    )
    token_audience: str | None = Field(
        default=None,
        description="`aud` every bearer token must carry (default `liaison`, which local "
        "tokens carry); required when trusting an external issuer's JWKS",
    )
    annuaire_public: bool = Field(
        default=False,
        description="serve /annuaire/fhir without a token too — then only the public national "
        "subset: no MSSanté addresses, nothing from local lists",
    )
    ops_auth: bool = Field(
        default=False, description="/metrics and /readyz need a system token"
    )
    max_page_size: int = Field(
        default=1000, description="largest page a search answers (a larger _count gets this)"
    )
    convert_processes: int | None = Field(
        default=None,
        description="processes beside the server that convert letters before their 202 "
        "(0: in the server process; default: one per core beyond two, at least one)",
    )
    record_database_url: str | None = Field(
        default=None,
        description="database of the embedded record; default: on SQLite a file of its own "
        "beside liaison's (`liaison.record.db`), on PostgreSQL liaison's database",
    )
    # MSSanté: each Communication to a recipient with an MSSanté mailbox is also sent by mail
    # through this SMTP relay (the operator's MSSanté server); unset, the channel is off.
    mssante_smtp_host: str | None = Field(
        default=None, description="SMTP server of liaison's MSSanté mailbox (unset: no mail)")
    mssante_smtp_port: int = 587
    mssante_sender: str | None = Field(
        default=None, description="liaison's (or the organisation's) MSSanté address, From:")
    mssante_starttls: bool = Field(
        default=True, description="require STARTTLS (only a test relay on loopback goes without)")
    mssante_ca_file: Path | None = Field(
        default=None, description="CA bundle the relay's certificate is checked against "
        "(default: the system's)")
    mssante_client_cert: Path | None = Field(
        default=None, description="client certificate (PEM, with its key or beside "
        "LIAISON_MSSANTE_CLIENT_KEY) for the operator's mutual TLS")
    mssante_client_key: Path | None = None
    mssante_username: str | None = None
    mssante_password: str | None = None
    mssante_timeout_seconds: float = 30.0
    # liaison's MSSanté mailbox, where delivery reports and read receipts come back (IMAP with
    # STARTTLS; unset: not collected). User and password default to the SMTP ones.
    mssante_imap_host: str | None = None
    mssante_imap_port: int = 143
    mssante_imap_username: str | None = None
    mssante_imap_password: str | None = None
    mssante_receipts_poll_seconds: float = Field(
        default=60.0, description="how often the mailbox is read for reports and receipts")

    # HL7 v2 ADT from a hospital's interface engine over MLLP (IHE PAM): the listener is started
    # by `liaison serve` when a port is set. MLLP carries no credentials: the listener acts for
    # the hospitals listed (idNat_Struct), on loopback unless told otherwise (a VPN or a TLS
    # tunnel in front of it), and with TLS when a certificate is given (client certificates
    # required when a CA is given).
    mllp_port: int | None = None
    mllp_host: str = "127.0.0.1"
    mllp_organizations: list[str] = Field(
        default_factory=list, description="idNat_Struct of the hospitals this listener acts for")
    mllp_tls_cert: Path | None = None
    mllp_tls_key: Path | None = None
    mllp_client_ca: Path | None = None

    @property
    def mssante_enabled(self) -> bool:
        return bool(self.mssante_smtp_host and self.mssante_sender)

    @property
    def resolved_convert_processes(self) -> int:
        """`convert_processes`, or one per core left once the server and the pusher have one:
        measured on two cores, a second conversion process only added contention (more
        processes than cores: slower for everyone, the pusher first)."""
        if self.convert_processes is not None:
            return max(0, self.convert_processes)
        return max(1, len(os.sched_getaffinity(0)) - 2)

    @property
    def audience(self) -> str:
        """The `aud` every token must carry."""
        return self.token_audience or DEFAULT_AUDIENCE

    def refusals(self) -> list[str]:
        """Why these settings must not serve (one line each)."""
        if self.mssante_smtp_host and not self.mssante_sender:
            return ["LIAISON_MSSANTE_SMTP_HOST is set but not LIAISON_MSSANTE_SENDER: say which "
                    "MSSanté mailbox liaison sends from"]
        if self.oidc_issuer and not (self.oidc_client_id and self.oidc_client_secret):
            return ["LIAISON_OIDC_ISSUER is set but not LIAISON_OIDC_CLIENT_ID and "
                    "LIAISON_OIDC_CLIENT_SECRET: give the client liaison is registered as"]
        if self.oidc_issuer and not _secure_or_loopback(self.oidc_issuer):
            return ["LIAISON_OIDC_ISSUER must be an https:// URL (plain http only on loopback)"]
        if self.jwks_url and not self.token_audience:
            return ["LIAISON_JWKS_URL trusts an external issuer, which signs tokens for other "
                    "services too: set LIAISON_TOKEN_AUDIENCE to the audience its tokens for "
                    "liaison carry"]
        if self.mllp_port is not None and not self.mllp_organizations:
            return ["LIAISON_MLLP_PORT is set but not LIAISON_MLLP_ORGANIZATIONS: say which "
                    "hospitals (idNat_Struct) the MLLP listener takes notices from"]
        return []

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'liaison.db').resolve()}"


def _secure_or_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing env."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings
