"""`liaison convert --jobs N`: letters converted by spawned worker processes, run for real (the
command as a fresh process, its workers, signals)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from adapter.mapping import convert_letter
from adapter.mapping.serialize import bundle_json
from tests.mapping.helpers import LETTERS
from tests.support.letter_variants import letter_variant
from tests.support.waiting import wait_for


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "adapter.cli", "convert", *args]


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def _inbox(folder: Path, count: int) -> Path:
    folder.mkdir()
    for n in range(count):
        (folder / f"letter-{n:05d}.xml").write_bytes(letter_variant(n))
    return folder


def _wait_for(path: Path, process: subprocess.Popen[bytes]) -> None:
    wait_for(lambda: path.exists() or process.poll() is not None, "a letter converted",
             timeout=60)
    assert path.exists(), "no letter converted: the command ended"


def _workers(command_pid: int) -> list[int]:
    children = Path(f"/proc/{command_pid}/task/{command_pid}/children").read_text().split()
    return sorted(int(pid) for pid in children
                  if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes())


def test_two_workers_write_the_same_bytes_and_lines_as_one_process(tmp_path: Path) -> None:
    again = tmp_path / "again"
    again.mkdir()
    # the same file name as an earlier letter: the last letter's files are kept
    shutil.copy(LETTERS / "ldl-ses-v2.xml", again / "ldl-ses-v1.xml")
    inputs = [str(LETTERS), str(LETTERS / "refused"), str(again)]
    runs = {}
    for jobs in (1, 2):
        folder = tmp_path / f"jobs-{jobs}"
        folder.mkdir()
        runs[jobs] = subprocess.run(
            _command(*inputs, "--out", "out", "--report", "--validate", "--jobs", str(jobs)),
            cwd=folder, capture_output=True, timeout=120)
    one, two = runs[1], runs[2]
    assert one.returncode == two.returncode == 1  # the refused letters
    assert one.stdout == two.stdout == b""
    assert two.stderr == one.stderr
    refused = sorted((LETTERS / "refused").glob("*.xml"))
    lines = two.stderr.decode().splitlines()
    assert [line.split(": refused: ")[0] for line in lines[:-1]] == [str(p) for p in refused]
    assert lines[-1] == f"{15 - len(refused)} of 15 letters converted into out"
    written = _files(tmp_path / "jobs-2" / "out")
    assert written == _files(tmp_path / "jobs-1" / "out")
    assert len(written) == 2 * 8  # a bundle and a report for each letter converted
    last = convert_letter((LETTERS / "ldl-ses-v2.xml").read_bytes(), validate=True)
    assert written["ldl-ses-v1.json"] == bundle_json(last.bundle, indent=True)


def test_ctrl_c_stops_the_workers_after_the_letter_in_hand(tmp_path: Path) -> None:
    inbox, out = _inbox(tmp_path / "inbox", 300), tmp_path / "out"
    command = subprocess.Popen(_command(str(inbox), "--out", str(out), "--jobs", "2"),
                               start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    _wait_for(out / "letter-00000.json", command)
    workers = _workers(command.pid)
    os.killpg(command.pid, signal.SIGINT)  # as a terminal does: to the command and its workers
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == 130, stderr
    assert b"Traceback" not in stderr
    assert len(workers) == 2
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)  # ended, and reaped
    written = list(out.iterdir())
    assert 0 < len(written) < 300
    for bundle in written:
        json.loads(bundle.read_bytes())  # none cut short


def test_a_worker_killed_fails_the_letter_it_held_and_the_others_are_converted(
        tmp_path: Path) -> None:
    inbox, out = _inbox(tmp_path / "inbox", 100), tmp_path / "out"
    command = subprocess.Popen(_command(str(inbox), "--out", str(out), "--jobs", "2"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the first worker started takes the first letters: once it wrote some, it is converting
    _wait_for(out / "letter-00002.json", command)
    os.kill(_workers(command.pid)[0], signal.SIGKILL)
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == 1
    failure, summary = stderr.decode().splitlines()
    held = failure.split(": the conversion process stopped (killed by signal 9).")[0]
    assert held.startswith(str(inbox / "letter-"))
    assert summary == f"99 of 100 letters converted into {out}"
    converted = {path.name for path in out.iterdir()} - {f"{Path(held).stem}.json"}
    assert converted == {f"letter-{n:05d}.json" for n in range(100)} - {f"{Path(held).stem}.json"}
