"""The MLLP listener: HL7 v2 ADT messages from a hospital's interface engine, each answered
with its acknowledgement once liaison has stored what it says (IHE PAM; HL7 v2 MLLP framing,
python-hl7's asyncio server).

AA: accepted (or received before, or an event that tells the care team nothing); AE: the
message is wrong and would be wrong again (the engine must not resend it as is, MSA-3 says
why); AR: liaison could not take it now (its database) or it names a hospital this listener
does not act for. The listener acts for the hospitals of `LIAISON_MLLP_ORGANIZATIONS`: MLLP
carries no credentials, so who may connect is decided by where it listens (loopback by default)
and, with TLS, by the client certificate.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import hl7.mllp
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from adapter.auth.principal import Principal
from adapter.config import Settings
from adapter.errors import BadRequest, LiaisonError
from adapter.ingest.adt import acknowledgement, decode, parse_adt
from adapter.ingest.notices import accept_notice

logger = logging.getLogger("liaison.mllp")


class MllpListener:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._principal = Principal(kind="hospital", subject="mllp",
                                    organizations=tuple(settings.mllp_organizations),
                                    scopes=("system/*.c",))
        self._server: Any = None

    async def start(self) -> MllpListener:
        settings = self._settings
        self._server = await hl7.mllp.start_hl7_server(
            self._serve, settings.mllp_host, settings.mllp_port, ssl=self._tls())
        logger.info("MLLP listener on %s:%s", settings.mllp_host, self.port)
        return self

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _tls(self) -> ssl.SSLContext | None:
        settings = self._settings
        if not settings.mllp_tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.mllp_tls_cert, settings.mllp_tls_key)
        if settings.mllp_client_ca:
            context.load_verify_locations(settings.mllp_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def _serve(self, reader: hl7.mllp.HL7StreamReader,
                     writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while not writer.is_closing():
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError:  # the engine closed the connection
                    return
                text = decode(block)
                code, why = await self.handle(text)
                writer.writeblock(acknowledgement(text, code, why).encode("utf-8"))
                await writer.drain()
        except (hl7.mllp.InvalidBlockError, ConnectionError) as error:
            logger.warning("MLLP connection dropped: %s", type(error).__name__)
        finally:
            writer.close()

    async def handle(self, text: str) -> tuple[str, str]:
        """The acknowledgement code of one message and why."""
        default = self._settings.mllp_organizations[0] \
            if len(self._settings.mllp_organizations) == 1 else None
        try:
            message = parse_adt(text, default_hospital=default)
            if message.notice is None:
                return "AA", f"{message.event}: nothing for the care team"
            notice = message.notice
            receipt = await run_in_threadpool(lambda: accept_notice(
                notice, engine=self._engine, settings=self._settings,
                principal=self._principal))
            return "AA", receipt.text
        except BadRequest as wrong:  # wrong as sent: not to be sent again as is
            return "AE", wrong.message
        except LiaisonError as refused:  # another hospital's stay, or not taken now
            return "AR", refused.message
        except Exception:  # the database, most likely: the engine resends later
            logger.exception("an ADT message could not be taken")
            return "AR", "liaison could not store the message now: send it again"

