"""Preparing a letter for acceptance: convert it, apply care coordination, serialise what will
be stored — in processes beside the server when it has them, in the calling thread otherwise.

Preparing is ~80 % of the CPU a letter costs before its 202, all of it under Python's lock: in
the server process, one core answers every hospital. `ConversionPool` runs it in spawned
processes (the machine's other cores), so the server process only reads requests and writes
to the database. The pool is started (and its imports paid) with the server, not on the first
letter; a pool process that dies is replaced, and the letter it held is prepared again.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import queue
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson
from sqlalchemy.engine import Engine

from adapter.auth.principal import SYSTEM, Principal
from adapter.auth.rules import letter_organization
from adapter.config import Settings, get_settings
from adapter.coordination import coordinate, embedded_record
from adapter.coordination.plan_work import keep_plan_work
from adapter.coordination.rules import load_rules
from adapter.coordination.stays import key_letter_stay
from adapter.directory.lookup import SqlDirectory
from adapter.errors import LiaisonError
from adapter.ingest import versions
from adapter.ingest.directory_cache import CachedDirectory
from adapter.mssante.plan import plan_messages
from adapter.record.transaction import SOURCE_TAG
from adapter.runtime import settle_after_start
from adapter.store.letters import patient_key, produced_resources

logger = logging.getLogger("liaison.ingest")

# Preparing in threads of the server process: more at once would not go faster (the GIL), and
# would hold more database connections (directory look-ups) than the pool keeps open.
_preparing_here = threading.BoundedSemaphore(4)


@dataclass(frozen=True)
class PreparedLetter:
    """What acceptance stores, computed from the letter alone (no write yet)."""

    document_id: str  # "system|value" of ClinicalDocument/id
    set_id: str
    version: int
    kind: str
    model: str
    patient_key: str
    payload: bytes  # the transaction Bundle, serialised
    resources: str  # what the receipt lists (JSON)
    report: str  # OperationOutcome of what was not mapped (JSON)
    # every resource of the bundle passed the FHIR R4 model check here: the embedded record
    # need not run it again (it does for a bundle that did not pass, and refuses it)
    validated: bool = False
    # the organisation (idNat_Struct) the letter is accepted for: its custodian or author
    # organisation that the sender acts for (`adapter.auth.rules.letter_organization`)
    organization: str | None = None
    # the version of the setId the bundle was prepared against (0: none): if another was
    # stored meanwhile, the letter is prepared again (`letter_writer`)
    based_on: int = 0
    # MSSanté messages to queue with the letter (`adapter.mssante.plan`), JSON list
    messages: bytes = b"[]"
    # the stay it ends (`stays.stay_identifier` value), when it numbers its stay
    stay: str | None = None


_directories: dict[str, CachedDirectory] = {}


def _directory(engine: Engine) -> CachedDirectory | None:
    """The directory of `engine`'s database (None where the directory part is not installed)."""
    key = str(engine.url)
    if key not in _directories:
        _directories[key] = CachedDirectory(SqlDirectory(engine))
    return _directories[key]


def _coordinated(conversion: Any, engine: Engine, settings: Settings | None) -> Any:
    """The conversion with care coordination applied (consent, coordinator, merge, events)."""
    # the conversion is ours to change
    return coordinate(conversion, engine, in_place=True, settings=settings)


def _validation_problems(conversion: Any) -> list[str]:
    """The FHIR model and profile checks of the final bundle (after coordination), done here —
    in the conversion processes, beside the server — rather than by the pusher, whose single
    process and single database writer set how fast letters reach the record. Problems are
    reported in the receipt; the record still judges (and refuses) a bundle with model ones."""
    from adapter.conformance.profiles import check_bundle
    from adapter.fhir_validation import validate_bundle

    problems = validate_bundle(conversion.bundle)
    conversion.report["issue"] += [
        {"severity": "warning", "code": "invalid", "diagnostics": f"FHIR validation: {problem}"}
        for problem in problems]
    # liaison's own profiles (CarePlan, CareTeam, Communication) of what coordination made of
    # the letter: reported, not refused (the record takes any valid FHIR)
    conversion.report["issue"] += [
        {"severity": "warning", "code": "invariant", "diagnostics": f"profile: {problem}"}
        for problem in check_bundle(conversion.bundle)]
    return problems


def _sent_by(conversion: Any, principal: Principal) -> str | None:
    """The organisation the letter is sent for (Forbidden: not one the sender acts for), named
    on the bundle (`SOURCE_TAG`) so the record grants it what the bundle writes."""
    summary = conversion.letter
    organization = letter_organization(principal,
                                       (summary.custodian, summary.author_organization))
    if organization is not None:
        conversion.bundle["meta"] = {"tag": [{"system": SOURCE_TAG, "code": organization}]}
    return organization


def prepare(xml: bytes, engine: Engine, principal: Principal = SYSTEM,
            settings: Settings | None = None) -> PreparedLetter:
    """Convert and coordinate one letter sent by `principal`; raises `RefusedLetter` (and kin)
    or `Forbidden` saying why not."""
    from adapter.mapping import convert_letter  # the mapping part: imported when first needed

    conversion = convert_letter(xml, directory=_directory(engine))
    organization = _sent_by(conversion, principal)
    stay = key_letter_stay(conversion.bundle, organization, conversion.letter.stay_id)
    if stay is not None:  # the Encounter and review of its stay, which a notice may have begun
        conversion = dataclasses.replace(conversion, letter=dataclasses.replace(
            conversion.letter, stay_key=stay["value"]))
    summary = conversion.letter
    previous = versions.previous_version(engine, "|".join(summary.set_id))
    if previous is not None and previous.version > summary.version:
        versions.record_late(conversion.bundle)  # nothing to coordinate: nothing changes
        _note(conversion, f"Version {summary.version} arrived after version "
                          f"{previous.version}: recorded as superseded, nothing current "
                          "changed.")
    else:
        conversion = _coordinated(conversion, engine, settings)
        if previous is not None:
            _supersede(conversion, previous, engine)
            _keep_plan_work(conversion, engine, settings or get_settings())
    messages = _mail(conversion, settings or get_settings())
    problems = _validation_problems(conversion)
    return PreparedLetter(
        document_id="|".join(summary.document_id),
        set_id="|".join(summary.set_id),
        version=summary.version,
        kind=summary.kind,
        model=summary.model,
        patient_key=patient_key([summary.ins] if summary.ins else summary.patient_identifiers),
        payload=orjson.dumps(conversion.bundle),
        resources=orjson.dumps(produced_resources(conversion.bundle)).decode(),
        report=orjson.dumps(conversion.report).decode(),
        validated=not problems,
        organization=organization,
        based_on=previous.version if previous is not None else 0,
        messages=orjson.dumps(messages),
        stay=summary.stay_key or None,
    )


def _mail(conversion: Any, settings: Settings) -> list[dict[str, Any]]:
    """The MSSanté messages of the letter (none when the channel is off); a recipient without
    MSSanté mailbox is said on the receipt."""
    if not settings.mssante_enabled:
        return []
    assert settings.mssante_sender
    plan = plan_messages(conversion.bundle, settings.mssante_sender)
    conversion.report["issue"] += [
        {"severity": "warning", "code": "incomplete", "diagnostics": f"MSSanté: {line}"}
        for line in plan.unreachable]
    return plan.messages


def _supersede(conversion: Any, previous: versions.Previous, engine: Engine) -> None:
    """The letter replaces `previous` in the record, and its messages say what changed."""
    from adapter.mapping import convert_letter

    earlier = convert_letter(previous.content, directory=_directory(engine))
    changes = versions.supersede(
        conversion.bundle, versions.items_of(conversion.bundle),
        earlier.bundle, versions.items_of(earlier.bundle), previous,
        earlier.letter.effective_time)
    versions.tell_correction(conversion.bundle, conversion.letter.version, changes)
    _note(conversion, versions.correction_notice(conversion.letter.version, changes))


def _keep_plan_work(conversion: Any, engine: Engine, settings: Settings) -> None:
    """What coordinators wrote on the stay's plan (in the embedded record, where the page
    writes) stays in the corrected letter's plan."""
    repository = embedded_record(engine, settings)
    if repository is None:
        return
    carried = keep_plan_work(conversion.bundle, repository, load_rules())
    if carried:
        _note(conversion, f"{carried} note(s) or item(s) the coordination recorded on the "
                          "earlier version's plan are kept.")


def _note(conversion: Any, message: str) -> None:
    conversion.report["issue"].append(
        {"severity": "information", "code": "informational", "diagnostics": message})


def prepare_here(xml: bytes, engine: Engine, principal: Principal = SYSTEM,
                 settings: Settings | None = None) -> PreparedLetter:
    with _preparing_here:
        return prepare(xml, engine, principal, settings)


# --- in pool processes --------------------------------------------------------------------
# Each process has its own pipe, and the request thread that checks a process out talks to it
# directly: one send, one blocking receive (outside Python's lock). A ProcessPoolExecutor
# passes every letter through two helper threads of the server, each needing the server's
# Python lock between requests: measured, requests then waited on their conversion ~10 times
# longer than it took.


def _serve(pipe: Connection, database_url: str, settings: Settings | None) -> None:
    """Child side: prepare each letter received; answer the prepared letter or the error.
    Ends at EOF (the server closed its end, or is gone)."""
    from adapter.store.db import get_engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when the pool stops
    engine = get_engine(database_url)
    settle_after_start()
    pipe.send(os.getpid())  # ready
    while True:
        try:
            principal = pipe.recv()
            xml = pipe.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            answer: PreparedLetter | LiaisonError = prepare(xml, engine, principal, settings)
        except LiaisonError as error:  # a refusal travels back and is raised in the server
            answer = error
        except Exception as error:  # a bug: a 500 for this letter, not a dead process
            # (the class only: a message may quote the letter)
            answer = LiaisonError(f"internal error while converting ({type(error).__name__})")
        pipe.send(answer)


class _Worker:
    def __init__(self, context: Any, database_url: str, settings: Settings | None) -> None:
        self.pipe, child_end = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child_end, database_url, settings), name="liaison-converter",
            daemon=True,
        )
        self.process.start()
        child_end.close()
        self.pid: int = self.pipe.recv()  # waits for its imports

    def prepare(self, xml: bytes, principal: Principal) -> PreparedLetter:
        self.pipe.send(principal)
        self.pipe.send_bytes(xml)
        answer = self.pipe.recv()
        if isinstance(answer, LiaisonError):
            raise answer
        return answer

    def close(self) -> None:
        self.pipe.close()  # EOF: the process ends
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


class ConversionPool:
    """`processes` spawned processes preparing letters of the database at `database_url`
    (with the server's `settings`: they say, e.g., which record the care-team merge reads)."""

    def __init__(self, database_url: str, processes: int,
                 settings: Settings | None = None) -> None:
        self.database_url = database_url
        self.settings = settings
        self.processes = processes
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    @property
    def pids(self) -> set[int]:
        return {worker.pid for worker in self._workers}

    def _add(self) -> None:
        worker = _Worker(self._context, self.database_url, self.settings)
        with self._lock:
            self._workers.append(worker)
        self._idle.put(worker)

    def start(self) -> ConversionPool:
        for _ in range(self.processes - len(self._workers)):
            self._add()
        return self

    def prepare(self, xml: bytes, engine: Engine, principal: Principal = SYSTEM
                ) -> PreparedLetter:
        worker = self._idle.get()
        try:
            letter = worker.prepare(xml, principal)
        except LiaisonError:  # the process answered (a refusal): it is ready for the next
            self._idle.put(worker)
            raise
        except BaseException as error:
            # Dead (killed, out of memory) or out of step with its pipe: never reused, a new
            # process takes its place; a letter that met a dead one is prepared here instead.
            self._replace(worker)
            if not isinstance(error, EOFError | OSError):
                raise
            logger.error("a conversion process died: starting a new one")
            return prepare_here(xml, engine, principal, self.settings)
        self._idle.put(worker)
        return letter

    def _replace(self, worker: _Worker) -> None:
        with self._lock:
            if worker not in self._workers:  # the pool is stopping
                return
            self._workers.remove(worker)
        worker.close()
        self._add()

    def stop(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()
