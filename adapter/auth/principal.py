"""Who is calling: the identity and role carried by a bearer token."""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("hospital", "professional", "coordinator", "system")

# SMART-style scopes granted to each kind when a token does not say otherwise.
DEFAULT_SCOPES: dict[str, tuple[str, ...]] = {
    "hospital": ("system/*.rs", "system/*.cud"),
    # reading what they are granted, writing messages in their patients' threads
    "professional": ("user/*.rs", "user/Communication.c"),
    # and keeping their CPTS's patients' plans and care teams from the coordinator's page
    "coordinator": ("user/*.rs", "user/Communication.c", "user/CarePlan.u", "user/CareTeam.u"),
    "system": ("system/*.cruds",),
}


@dataclass(frozen=True)
class Principal:
    kind: str  # hospital | professional | coordinator | system
    subject: str | None = None  # the token's `sub`
    idnat: str | None = None  # idNat_PS of a professional
    cpts: str | None = None  # identifier of the coordinator's CPTS
    organization: str | None = None  # idNat_Struct of a hospital (the first of `organizations`)
    scopes: tuple[str, ...] = field(default_factory=tuple)
    # every idNat_Struct a hospital token acts for (a GHT's token lists its establishments)
    organizations: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        listed = tuple(dict.fromkeys(
            [*([self.organization] if self.organization else []), *self.organizations]))
        object.__setattr__(self, "organizations", listed)
        object.__setattr__(self, "organization", listed[0] if listed else None)

    @property
    def actor(self) -> str | None:
        """The identifier the audit trail records for this caller."""
        return self.idnat or self.organization or self.cpts or self.subject

    def has_scope(self, action: str, resource_type: str = "*") -> bool:
        """True if a scope grants `action` (one of c r u d s) on every resource type, or on
        `resource_type` when one is given."""
        for scope in self.scopes:
            _, _, rest = scope.partition("/")
            resource, _, permissions = rest.partition(".")
            if resource not in ("*", resource_type):
                continue
            if permissions in ("*", "write") and action in "cud":
                return True
            if permissions in ("*", "read") and action in "rs":
                return True
            if action in permissions:
                return True
        return False


SYSTEM = Principal(kind="system", subject="local", scopes=DEFAULT_SCOPES["system"])
