"""The console script's entry point keeps the exit codes commands choose.

``main()`` runs the typer app without standalone mode (to print its own one-line errors), and
then click returns a ``typer.Exit(code)``'s code instead of exiting with it; ``main`` must pass
it on (the probe exits 2 on its alarm, ``mlops serve`` 74 when captured records were dropped).
"""

from __future__ import annotations

import sys

import pytest
import typer

import flows.cli


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def finish(code: int = 0) -> None:
        if code:
            raise typer.Exit(code)

    @app.command()
    def other() -> None:  # two commands: the app keeps its subcommand form
        pass

    return app


@pytest.mark.parametrize("code", [2, 74])
def test_an_exit_code_a_command_chooses_reaches_the_shell(
    code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flows.cli, "app", _app())
    monkeypatch.setattr(sys, "argv", ["mlops", "finish", "--code", str(code)])
    with pytest.raises(SystemExit) as exited:
        flows.cli.main()
    assert exited.value.code == code


def test_success_exits_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flows.cli, "app", _app())
    monkeypatch.setattr(sys, "argv", ["mlops", "finish"])
    flows.cli.main()  # returns: exit status 0
