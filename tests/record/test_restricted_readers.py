"""Who may read a restricted letter's resources is kept beside the token index
(`record_restricted_reader`): it follows the resource's tags on every write, and a record
from before the table gets it filled from the tags it holds."""

from __future__ import annotations

from sqlalchemy import text

from adapter.auth.principal import DEFAULT_SCOPES, Principal
from adapter.record.repository import Repository
from adapter.store.db import get_engine, init_db
from tests.record.bundles import PCP, letter_bundle
from tests.record.test_access import _restrict_to

OTHER_MEMBER = "801111111111"


def _reader(idnat: str) -> Principal:
    return Principal(kind="professional", idnat=idnat, scopes=DEFAULT_SCOPES["professional"])


def _plans(repository: Repository, idnat: str) -> int:
    return int(repository.search("CarePlan", [("_summary", "count")], _reader(idnat))["total"])


def test_restriction_follows_the_tags_and_an_older_record_gets_it_from_them() -> None:
    repository = Repository(get_engine())
    restricted = _restrict_to(letter_bundle(team=(PCP, OTHER_MEMBER), recipients=(PCP,)), PCP)
    repository.transaction(restricted)
    assert (_plans(repository, PCP), _plans(repository, OTHER_MEMBER)) == (1, 0)
    # a record written before the table existed: the table is made and filled from the tags
    with repository.engine.begin() as connection:
        connection.execute(text("DROP TABLE record_restricted_reader"))
    init_db(repository.engine)
    with repository.engine.connect() as connection:
        readers = connection.execute(text(
            "SELECT DISTINCT reader FROM record_restricted_reader")).scalars().all()
    assert readers == [PCP]
    assert (_plans(repository, PCP), _plans(repository, OTHER_MEMBER)) == (1, 0)
    # the corrected letter without the restriction: the other member reads it now
    repository.transaction(letter_bundle(team=(PCP, OTHER_MEMBER), recipients=(PCP,)))
    assert (_plans(repository, PCP), _plans(repository, OTHER_MEMBER)) == (1, 1)
