"""The ``tiergate smsc`` verb: the test SMSC of `tiergate_kits.smsc` as a process.

Tests, benchmarks, the demo, the drill and the chart's ``smsc`` component (demo and e2e images
only, which install the kits beside the product) start it; the product's wheel has no such verb.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tiergate.sender import eventloop
from tiergate.sender.cli import check_loop, start_logging

app = typer.Typer(no_args_is_help=False, pretty_exceptions_enable=False)


@app.callback(invoke_without_command=True)
def smsc(
    port: Annotated[int, typer.Option(help="SMPP port")] = 2775,
    host: Annotated[str, typer.Option(help="Listen address")] = "127.0.0.1",
    stats_port: Annotated[int, typer.Option(help="HTTP port for /stats, /metrics, /down, /up")] = 8025,
    throttle_rate: Annotated[float | None, typer.Option(help="Accept at most this many submits/s")] = None,
    reject_prefix: Annotated[
        list[str] | None,
        typer.Option(help="Reject destinations with this prefix (ESME_RINVDSTADR); repeatable"),
    ] = None,
    receipts: Annotated[bool, typer.Option(help="Send delivery receipts (deliver_sm)")] = False,
    receipt_delay: Annotated[float, typer.Option(help="Seconds before each receipt")] = 0.0,
) -> None:
    """Run a test SMSC (smpp34's server) that counts, throttles, rejects and sends receipts."""
    from tiergate_kits.smsc import TestSmsc, run_smsc

    check_loop()
    start_logging()
    eventloop.run(
        run_smsc(
            TestSmsc(
                host,
                port,
                stats_port=stats_port,
                throttle_rate=throttle_rate,
                reject_prefixes=tuple(reject_prefix or ()),
                receipts=receipts,
                receipt_delay=receipt_delay,
            )
        )
    )
