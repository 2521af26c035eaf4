"""`cardctl virtual-card` and `cardctl card personalise`: a card for the demo and the tests.

The lead mounts `app`'s commands into cardctl; run standalone with
`python -m reader_agent.cli --help`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reader_agent import keys, protocol
from reader_agent.protocol import CardCertificate, HolderType
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import DEFAULT_STATE_DIR, CardStateError, CardStore
from reader_agent.virtual_card.vpcd import DEFAULT_HOST, DEFAULT_PORT, VpcdCard

if TYPE_CHECKING:
    from reader_agent.outbox import Outbox

app = typer.Typer(help="Virtual smart cards for the ledger's open card protocol.", no_args_is_help=True)

StateDir = Annotated[Path, typer.Option(help="Folder of virtual card state files.")]


@app.command("virtual-card")
def virtual_card(
    serial: Annotated[str, typer.Option(help="Serial of a personalised card.")],
    port: Annotated[int, typer.Option(help="vpcd port of the reader (35963 = 'Virtual PCD 00 00').")] = (
        DEFAULT_PORT
    ),
    host: Annotated[str, typer.Option(help="vpcd host.")] = DEFAULT_HOST,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    personalise_missing: Annotated[
        bool, typer.Option(help="Personalise the card as a family card first if it does not exist.")
    ] = False,
) -> None:
    """Insert the card into a vpcd reader; Ctrl-C (or SIGTERM) removes it."""
    store = CardStore(state_dir)
    try:
        if personalise_missing and not store.exists(serial):
            store.personalise(serial, HolderType.FAMILY)
        state = store.load(serial)
    except CardStateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    card = VpcdCard(Applet(state, store.save), host=host, port=port).insert()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    typer.echo(f"virtual card {serial} inserted at vpcd {host}:{port}; Ctrl-C removes it", err=True)
    while not stop.wait(0.5):
        pass
    card.remove()
    typer.echo(f"virtual card {serial} removed", err=True)


@app.command("personalise")
def personalise(
    serial: Annotated[str, typer.Option(help="Card serial: 1-16 of A-Z, 0-9, '-'.")],
    holder_type: Annotated[HolderType, typer.Option(help="Whose quota the card carries.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    issuer_key: Annotated[
        Path | None,
        typer.Option(help="Issuer private key PEM: also sign and write the card certificate."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing card (new key, counter 0).")] = False,
) -> None:
    """Write serial, a fresh key pair and counter 0; print the certificate request as JSON."""
    store = CardStore(state_dir)
    try:
        state = store.personalise(serial, holder_type, overwrite=force)
    except CardStateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    request: dict[str, object] = {
        "serial": serial,
        "holder_type": holder_type.value,
        "public_key_hex": state.public_key.hex(),
        "public_key_der_b64": base64.b64encode(protocol.public_key_der(state.public_key)).decode("ascii"),
    }
    if issuer_key is not None:
        try:
            key = keys.load_private_key(issuer_key)
        except keys.KeyFileError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        cert = CardCertificate(serial, holder_type, state.public_key, dt.datetime.now(dt.UTC).date())
        state.card_certificate = protocol.issue_card_certificate(key, cert)
        store.save(state)
        request["card_certificate_hex"] = state.card_certificate.hex()
    typer.echo(json.dumps(request, indent=2))


def _open_outbox(path: Path) -> Outbox:
    """The outbox, locked for this process; another agent, clerk page or sync on it exits 1 at once."""
    from reader_agent.outbox import Outbox, OutboxBusy

    try:
        return Outbox(path)
    except OutboxBusy as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("agent")
def agent(
    backend: Annotated[str, typer.Option(help="Backend base URL.")] = "http://127.0.0.1:8000",
    token: Annotated[
        str,
        typer.Option(envvar="READER_AGENT_TOKEN", help="Device token (dev_...), shown once at enrolment."),
    ] = "",
    point: Annotated[str, typer.Option(help="Code of the point this device is enrolled at.")] = "",
    outbox: Annotated[Path, typer.Option(help="Local outbox (SQLite).")] = Path("var/agent/outbox.sqlite3"),
    script: Annotated[
        Path | None, typer.Option(help="Headless: JSON lines of taps ('-' for stdin); prints JSON lines.")
    ] = None,
    watch: Annotated[bool, typer.Option(help="Tap every card inserted in any reader (hot-plug).")] = False,
) -> None:
    """Run the point's reader agent headless: a script of taps, or watching all readers."""
    import sys

    from reader_agent import headless
    from reader_agent.agent import PointAgent
    from reader_agent.client import BackendClient
    from reader_agent.monitor import ReaderWatcher

    if not token or not point or (script is None) == (not watch):
        typer.echo("error: --token (or READER_AGENT_TOKEN), --point and one of --script/--watch", err=True)
        raise typer.Exit(2)
    box = _open_outbox(outbox)
    client = BackendClient(backend, token)
    runner = PointAgent(client, box, point)
    runner.load_keys()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if script is not None:
            lines = sys.stdin if str(script) == "-" else script.open(encoding="utf-8")
            results = headless.run(runner, lines)
        else:
            watcher = ReaderWatcher().start()
            results = headless.watch(runner, watcher, stop)
        for result in results:
            typer.echo(json.dumps(result, ensure_ascii=False))
            sys.stdout.flush()
    finally:
        client.close()
        box.close()


@app.command("clerk")
def clerk(
    backend: Annotated[str, typer.Option(help="Backend base URL.")] = "http://127.0.0.1:8000",
    token: Annotated[str, typer.Option(envvar="READER_AGENT_TOKEN", help="Device token (dev_...).")] = "",
    point: Annotated[str, typer.Option(help="Code of the point this device is enrolled at.")] = "",
    outbox: Annotated[Path, typer.Option(help="Local outbox (SQLite).")] = Path("var/agent/outbox.sqlite3"),
    port: Annotated[int, typer.Option(help="Port of the clerk page on 127.0.0.1.")] = 8001,
) -> None:
    """Serve the clerk's page on 127.0.0.1 (Arabic and English; the browser shapes the text)."""
    import uvicorn

    from reader_agent.agent import PointAgent
    from reader_agent.client import BackendClient
    from reader_agent.reader import ReaderError, list_readers
    from reader_agent.ui.app import create_clerk_app

    if not token or not point:
        typer.echo("error: --token (or READER_AGENT_TOKEN) and --point are required", err=True)
        raise typer.Exit(2)
    box = _open_outbox(outbox)
    runner = PointAgent(BackendClient(backend, token), box, point)
    runner.load_keys()
    try:
        readers = list_readers()
    except ReaderError:
        readers = []
    uvicorn.run(create_clerk_app(runner, readers or ["Virtual PCD 00 00"]), host="127.0.0.1", port=port)


if __name__ == "__main__":
    app()
