"""The ``attnfer`` command line (typer + rich)."""

from __future__ import annotations

import json
import warnings
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import __version__

app = typer.Typer(
    name="attnfer",
    help="Attention-based facial expression recognition: PAtt-Lite, FERAtt, EMO-Net, SA-FER.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _version(value: bool) -> None:
    if value:
        console.print(f"attnfer {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """attnfer command line."""


@app.command()
def models(
    filter: Annotated[str, typer.Option("--filter", "-f", help="fnmatch pattern on model names.")] = "",
    num_classes: Annotated[int, typer.Option("--num-classes", "-c", help="Classifier width.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    card: Annotated[str, typer.Option("--card", help="Print the full card of one model.")] = "",
) -> None:
    """List the registered models with parameters and GMACs at their default input size."""
    from .models import count_macs, create_model, list_models

    if card:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = create_model(card, num_classes=num_classes)
        console.print_json(json.dumps(m.card.to_dict()))
        return
    names = list_models(filter)
    if not names:
        console.print(f"[red]no model matches '{filter}'[/red]")
        raise typer.Exit(1)
    rows = []
    with console.status("building models and counting MACs..."):
        for name in names:
            m = create_model(name, num_classes=num_classes)
            c = m.card
            rows.append(
                dict(
                    name=name,
                    params=c.num_params,
                    gmacs=round(count_macs(m) / 1e9, 3),
                    input_size=list(c.input_size),
                    paper=c.paper,
                )
            )
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"attnfer models ({num_classes} classes)")
    table.add_column("model", style="bold cyan")
    table.add_column("params", justify="right")
    table.add_column("GMACs", justify="right")
    table.add_column("input", justify="right")
    table.add_column("paper / origin")
    for r in rows:
        h = r["input_size"]
        table.add_row(r["name"], f"{r['params']:,}", f"{r['gmacs']:.3f}", f"{h[0]}x{h[1]}x{h[2]}", r["paper"])
    console.print(table)


if __name__ == "__main__":
    app()
