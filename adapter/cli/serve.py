"""`liaison serve`, `liaison worker` and `liaison outbox status | retry ID | replay --failed`."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

import typer

outbox_app = typer.Typer(
    help="Look at and repair the outbox of bundles waiting to be pushed.", no_args_is_help=True,
    rich_markup_mode=None)


def _fail(message: str) -> None:
    typer.echo(f"liaison: {message}", err=True)
    raise typer.Exit(1)


def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8080, help="port to listen on"),
    workers: int = typer.Option(1, help="server processes (each with its own pusher)"),
    pusher: bool | None = typer.Option(
        None, help="run a pusher with the server (default: LIAISON_PUSH_IN_SERVER, true)"
    ),
) -> None:
    """Serve the ingestion API, the embedded record and the directory; deliver from a pusher
    process and convert letters in processes beside the server (LIAISON_PUSH_PROCESS,
    LIAISON_CONVERT_PROCESSES)."""
    import uvicorn

    from adapter.api.app import create_app
    from adapter.config import get_settings

    settings = get_settings()
    for refusal in settings.refusals():
        typer.echo(f"error: {refusal}", err=True)
        raise typer.Exit(2)
    if pusher is not None:
        settings.push_in_server = pusher
    if workers > 1:  # each worker process builds its app from the environment
        os.environ["LIAISON_PUSH_IN_SERVER"] = str(settings.push_in_server).lower()
        uvicorn.run(
            "adapter.api.app:create_served_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )
        return
    # No access log: search URLs carry patients' INS (`?patient.identifier=…`); the record's
    # audit table says who read what, without clinical content.
    uvicorn.run(create_app(settings, serving=True), host=host, port=port, log_level="warning",
                access_log=False)


def worker(
    once: bool = typer.Option(False, help="push what is due, then exit"),
    threads: int = typer.Option(0, help="sending threads (default: LIAISON_PUSH_WORKERS)"),
) -> None:
    """Run a pusher alone (several may share one PostgreSQL outbox)."""
    from adapter.config import get_settings
    from adapter.ingest.delivery import delivery_pusher
    from adapter.runtime import settle_after_start
    from adapter.store.db import get_engine

    settings = get_settings()
    pusher = delivery_pusher(get_engine(), settings, threads=threads or None)
    settle_after_start()
    if once:
        pusher.drain(timeout=settings.push_timeout_seconds * 4)
        pusher.target.close()
        return
    stopped = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    pusher.start()
    typer.echo(f"liaison worker pushing to {pusher.target.name}")
    stopped.wait()
    pusher.stop()


@outbox_app.command("status")
def status(
    failed: bool = typer.Option(False, "--failed", help="also list the failed entries"),
) -> None:
    """Entries per status (and the failed ones with the target's answer)."""
    from adapter.store import outbox
    from adapter.store.db import get_engine

    engine = get_engine()
    for name, number in outbox.counts(engine).items():
        typer.echo(f"{name:<10} {number}")
    if failed:
        for entry in outbox.entries(engine, status=outbox.FAILED):
            outcome = entry.last_error_json() or {}
            reason = "; ".join(
                issue.get("diagnostics") or (issue.get("details") or {}).get("text", "")
                for issue in outcome.get("issue", [])
            )
            typer.echo(
                f"#{entry.id} {entry.kind} attempts={entry.attempts} "
                f"status={entry.last_status}: {reason}"
            )


@outbox_app.command("retry")
def retry(entry_id: int = typer.Argument(..., help="outbox entry id")) -> None:
    """Put one entry back in line now."""
    from adapter.store import outbox
    from adapter.store.db import get_engine

    engine = get_engine()
    if entry_id in outbox.superseded(engine):
        _fail(f"entry {entry_id} is an older version of a letter whose newer version was pushed")
    if not outbox.retry(engine, entry_id):
        _fail(f"no outbox entry {entry_id} waiting or failed")
    typer.echo(f"entry {entry_id} will be pushed again")


@outbox_app.command("replay")
def replay(
    failed: bool = typer.Option(False, "--failed", help="replay every failed entry"),
) -> None:
    """Put every failed entry back in line."""
    if not failed:
        _fail("say what to replay: --failed")
    from adapter.store import outbox
    from adapter.store.db import get_engine

    engine = get_engine()
    number = outbox.replay_failed(engine)
    typer.echo(f"{number} failed entr{'y' if number == 1 else 'ies'} will be pushed again")
    left = len(outbox.superseded(engine))
    if left:
        typer.echo(f"{left} left alone: older versions of letters whose newer version was pushed")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)
    app.add_typer(outbox_app, name="outbox")
