"""A real IMAP mailbox on loopback: Debian's Dovecot, started by the test with a configuration
of its own (STARTTLS required, the test CA's certificate, one user), stopped after. Stands for
liaison's MSSanté mailbox, where delivery reports and read receipts come back.

`scripts/test-deps` installs `dovecot-imapd`; without it (or without root to run it as its
`dovecot` user) the tests that need it skip, saying why."""

from __future__ import annotations

import imaplib
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.mail import TlsFiles
from tests.support.servers import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def unavailable() -> str | None:
    """Why a Dovecot mailbox cannot run here (None: it can)."""
    if not Path(DOVECOT).exists():
        return "dovecot is not installed (scripts/test-deps installs dovecot-imapd)"
    if os.geteuid() != 0:
        return "dovecot needs root to start its processes as their users"
    try:
        import pwd

        pwd.getpwnam("dovecot")
    except KeyError:
        return "no dovecot user (the dovecot-core package creates it)"
    return None


class Mailbox:
    """`with Mailbox(tls, user, password) as mailbox:` a Dovecot IMAP server on 127.0.0.1."""

    def __init__(self, tls: TlsFiles, user: str, password: str,
                 others: tuple[str, ...] = ()) -> None:
        """`user`: liaison's mailbox; `others`: the recipients' (same password), for a relay
        that delivers into them (`MailRelay(deliver_to=…)`)."""
        self.tls, self.user, self.password = tls, user, password
        self.users = (user, *others)
        self.port = free_port()
        # Dovecot's processes run as its users: their folder must be theirs to enter
        self.folder = Path(tempfile.mkdtemp(prefix="liaison-imap-"))
        self._started = False

    def start(self) -> Mailbox:
        folder = self.folder
        folder.chmod(0o755)
        for name in ("run", "state", "mail"):
            (folder / name).mkdir()
        shutil.chown(folder / "mail", "dovecot", "dovecot")
        for source in (self.tls.cert, self.tls.key):
            shutil.copy(source, folder / source.name)
        (folder / "users").write_text(
            "".join(f"{user}:{{PLAIN}}{self.password}\n" for user in self.users))
        (folder / "dovecot.conf").write_text(f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{folder}/{self.tls.cert.name}
ssl_key = <{folder}/{self.tls.key.name}
auth_mechanisms = plain
disable_plaintext_auth = yes
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={folder}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
""")
        subprocess.run([DOVECOT, "-c", str(folder / "dovecot.conf")], check=True)
        self._started = True
        deadline = time.monotonic() + 20
        while True:  # the master forks, then listens: ready once a session logs in
            try:
                with self.connect():
                    break
            except (OSError, imaplib.IMAP4.error):
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)
        return self

    def connect(self, user: str | None = None) -> imaplib.IMAP4:
        """A logged-in IMAP session on the INBOX of `user` (default: liaison's, where the
        remote servers' reports arrive)."""
        session = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        session.starttls(ssl_context=ssl.create_default_context(cafile=str(self.tls.ca)))
        session.login(user or self.user, self.password)
        session.select("INBOX")
        return session

    def deliver(self, raw: bytes, user: str | None = None) -> None:
        """Put a message in a mailbox, as the operator's server does when one arrives."""
        with self.connect(user) as session:
            session.append("INBOX", None, None, raw)

    def messages(self, user: str) -> list[bytes]:
        """Every message in `user`'s INBOX."""
        with self.connect(user) as session:
            _, found = session.search(None, "ALL")
            raws = []
            for number in (found[0] or b"").split():
                _, data = session.fetch(number, "(BODY.PEEK[])")
                raws += [item[1] for item in data if isinstance(item, tuple)]
            return raws

    def flags(self) -> list[bytes]:
        with self.connect() as session:
            _, data = session.fetch("1:*", "(FLAGS)")
            return [item for item in data if isinstance(item, bytes)]

    def stop(self) -> None:
        if self._started:
            # `dovecot stop` signals the master named in its pid file and waits for it
            subprocess.run([DOVECOT, "-c", str(self.folder / "dovecot.conf"), "stop"],
                           check=False, capture_output=True, timeout=30)
            self._started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Mailbox:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def settings(self) -> dict[str, object]:
        return {"mssante_imap_host": "127.0.0.1", "mssante_imap_port": self.port,
                "mssante_imap_username": self.user, "mssante_imap_password": self.password}
