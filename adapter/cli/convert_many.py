"""`liaison convert DIR… --out DIR`: letters → bundle files, in this process or in workers.

One letter's work (`convert_to_files`) is the same in the command's process (`--jobs 1`) and in
a worker process, so the files written are the same bytes either way; what is printed comes back
to the command, which prints it in the order of the letters whatever the worker.

Workers are *spawned*, not forked (a fork copies locks other threads hold at that instant, see
`adapter.directory.writer_process`), each importing the mapping once. They take the letters in
chunks, two chunks ahead so none waits for the next, write their files themselves and answer one
line per letter. Letters sharing a file name (the same stem in two folders) go to one chunk, in
their order, so the last one's files are kept, as in one process.

This module sits in the command line because the command's own process must not import the
mapping (`adapter.mapping` loads its engine) when workers do the converting: with two workers on
two cores, the command's process paying the mapping's import would slow them.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from adapter.errors import RefusedLetter

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from adapter.mapping.directory_port import DirectoryLookup

_CHUNK = 16  # letters handed to a worker at once: a few ms of answers each way per chunk
_STOP_SECONDS = 10.0  # for a worker to finish the letter in hand once told to stop


@dataclass(frozen=True)
class Options:
    """How every letter of one run is converted, and where its files go."""

    out: Path
    report: bool
    validate: bool
    use_directory: bool


def read_letter(letter: Path) -> bytes:
    try:
        return letter.read_bytes()
    except OSError as error:
        raise RefusedLetter(f"cannot read the file ({error.strerror}).") from None


def invalid(report: dict[str, Any]) -> bool:
    return any(issue.get("code") == "invalid" for issue in report.get("issue", []))


def open_directory(use_directory: bool) -> DirectoryLookup | None:
    if not use_directory:
        return None
    from adapter.directory.lookup import SqlDirectory
    from adapter.store.db import get_engine

    return SqlDirectory(get_engine())


def convert_to_files(letter: Path, options: Options, directory: DirectoryLookup | None
                     ) -> str | None:
    """Write `<stem>.json` (and `<stem>.report.json`) into `options.out`; return the line
    saying why the letter failed, or None."""
    from adapter.mapping.engine import convert_letter
    from adapter.mapping.serialize import bundle_json

    try:
        conversion = convert_letter(read_letter(letter), directory=directory,
                                    validate=options.validate)
    except RefusedLetter as refused:
        return f"{letter}: refused: {refused.message}"
    except Exception as error:  # a bug met by one letter: the others are still converted
        message = " ".join(str(error).split())
        return f"{letter}: internal error ({type(error).__name__}: {message})."
    (options.out / f"{letter.stem}.json").write_bytes(bundle_json(conversion.bundle, indent=True))
    if options.report:
        (options.out / f"{letter.stem}.report.json").write_bytes(
            orjson.dumps(conversion.report, option=orjson.OPT_INDENT_2))
    if options.validate and invalid(conversion.report):
        return f"{letter}: the bundle does not validate."
    return None


Outcomes = Generator[str | None, None, None]  # a failure line, or None, for each letter


def convert_here(letters: list[Path], options: Options) -> Outcomes:
    """Each letter's failure line (or None), in order, converted in this process."""
    directory = open_directory(options.use_directory)
    for position, letter in enumerate(letters):
        yield convert_to_files(letter, options, directory)
        if position == 0:
            _settle()


def _settle() -> None:
    # Once the first letter imported the mapping and built the FHIR models it checks with,
    # those are set aside from the garbage collector's scans: it walked them again and again
    # while letters were converted, and once more at exit (measured: ~0.5 s of CPU in 3.5 for
    # 500 letters).
    from adapter.runtime import settle_after_start

    settle_after_start()


def worker_count(jobs: int, letters: int) -> int:
    """Workers worth starting for `letters` letters: none (convert here) for one job or one
    letter, otherwise no more workers than letters."""
    return 0 if jobs <= 1 or letters <= 1 else min(jobs, letters)


def _chunks(letters: list[Path], workers: int) -> deque[list[int]]:
    # Small runs get small chunks, so that every worker has some; letters of one stem together.
    size = max(1, min(_CHUNK, len(letters) // (workers * 4)))
    by_stem: dict[str, list[int]] = {}
    for index, letter in enumerate(letters):
        by_stem.setdefault(letter.stem, []).append(index)
    chunks: deque[list[int]] = deque()
    chunk: list[int] = []
    for indexes in by_stem.values():
        chunk.extend(indexes)
        if len(chunk) >= size:
            chunks.append(sorted(chunk))
            chunk = []
    if chunk:
        chunks.append(sorted(chunk))
    return chunks


# --- in a worker process -----------------------------------------------------------------


def _work(pipe: Connection, options: Options) -> None:
    """Convert each chunk received, answering (index, line) per letter. Ends at EOF (the
    command is done, or gone) or when the command no longer reads (it was interrupted)."""
    from adapter.mapping.knowledge import knowledge  # the whole mapping, before "ready"

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command decides when workers stop
    if options.validate:
        import adapter.fhir_validation  # noqa: F401
    directory = open_directory(options.use_directory)
    knowledge()
    first = True
    try:
        pipe.send(("ready", None))
        while True:
            chunk: list[tuple[int, str]] = pipe.recv()
            for index, letter in chunk:
                line = convert_to_files(Path(letter), options, directory)
                pipe.send((index, line))
                if first:
                    _settle()
                    first = False
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return


# --- in the command's process -------------------------------------------------------------


class WorkerFailed(RuntimeError):
    """No worker process could start (their error is on stderr)."""


class _Worker:
    def __init__(self, context: Any, options: Options) -> None:
        self.pipe, child_end = context.Pipe()
        # Started with SIGINT ignored, which the new interpreter keeps: a Ctrl-C during its
        # imports would otherwise print a traceback from each worker.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.process = context.Process(target=_work, args=(child_end, options),
                                           name="liaison-convert", daemon=True)
            self.process.start()
        finally:
            signal.signal(signal.SIGINT, previous)
        child_end.close()  # so that the command sees EOF when the worker ends
        self.ready = False
        self.in_hand: deque[list[int]] = deque()  # chunks given, not all answered, in order

    def give(self, chunk: list[int], letters: list[Path]) -> None:
        self.in_hand.append(chunk)
        self.pipe.send([(index, str(letters[index])) for index in chunk])

    def answered(self, index: int) -> None:
        current = self.in_hand[0]
        current.remove(index)
        if not current:
            self.in_hand.popleft()

    def end_reason(self) -> str:
        self.process.join(_STOP_SECONDS)
        code = self.process.exitcode
        return f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"

    def stop(self) -> None:
        self.pipe.close()  # EOF, or a broken pipe at its next answer: it ends
        self.process.join(_STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class _Pool:
    """Worker processes, each kept two chunks ahead, and the answers not yet given out."""

    def __init__(self, letters: list[Path], options: Options, workers: int) -> None:
        import multiprocessing

        self.letters, self.options = letters, options
        self.context = multiprocessing.get_context("spawn")
        self.chunks = _chunks(letters, workers)
        self.answers: dict[int, str | None] = {}
        self.running: dict[Any, _Worker] = {}  # by the command's end of its pipe
        self.workers = workers

    def start(self) -> None:
        for _ in range(self.workers):
            self._start()

    def _start(self) -> None:
        worker = _Worker(self.context, self.options)
        self.running[worker.pipe] = worker
        self._feed(worker)

    def _feed(self, worker: _Worker) -> None:
        while len(worker.in_hand) < 2 and self.chunks:
            worker.give(self.chunks.popleft(), self.letters)

    def receive(self) -> None:
        """Wait for answers, and take them."""
        from multiprocessing.connection import wait

        for pipe in wait(list(self.running)):
            worker = self.running[pipe]
            try:
                index, line = worker.pipe.recv()
            except (EOFError, OSError):
                self._ended(worker)
                continue
            if index == "ready":
                worker.ready = True
                continue
            self.answers[index] = line
            worker.answered(index)
            self._feed(worker)

    def _ended(self, worker: _Worker) -> None:
        """A worker died (killed, out of memory): if it was converting, the letter in hand
        fails with a line saying so, and a new worker takes the rest of its letters; one that
        died starting is not replaced (if none can start, the run stops)."""
        del self.running[worker.pipe]
        worker.pipe.close()
        reason = worker.end_reason()
        unanswered = [index for chunk in worker.in_hand for index in chunk]
        if worker.ready and unanswered:
            held = unanswered.pop(0)
            self.answers[held] = f"{self.letters[held]}: the conversion process stopped ({reason})."
        if unanswered:
            self.chunks.appendleft(unanswered)
        if worker.ready and self.chunks:
            self._start()
        if not self.running:
            if self.chunks:
                raise WorkerFailed(f"no conversion process could start ({reason})")
            return
        for other in self.running.values():
            self._feed(other)

    def stop(self) -> None:
        workers, self.running = list(self.running.values()), {}
        for worker in workers:
            worker.pipe.close()
        for worker in workers:
            worker.stop()


def convert_in_workers(letters: list[Path], options: Options, workers: int) -> Outcomes:
    """Each letter's failure line (or None), in the letters' order, converted by `workers`
    spawned processes. Closing this generator early (Ctrl-C) stops the workers, each after the
    letter in hand."""
    pool = _Pool(letters, options, workers)
    try:
        pool.start()
        following = 0
        while following < len(letters):
            pool.receive()
            while following in pool.answers:
                yield pool.answers.pop(following)
                following += 1
    finally:
        pool.stop()
