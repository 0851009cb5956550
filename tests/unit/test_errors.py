"""One error root: every error the auditor raises on purpose is an AuditorError, and the
command line turns one that no command handled into a line on stderr and exit code 3."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import typer

from auditor.cli.exitcodes import ExitCode
from auditor.cli.main import run_app
from auditor.domain.errors import AuditorError

PRODUCT = ("auditor", "probes", "topology", "policies", "lab")


def _error_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for root in PRODUCT:
        package = importlib.import_module(root)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{root}."):
            if info.name.endswith("__main__"):  # importing it runs the command line
                continue
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == info.name:
                    found[f"{info.name}.{value.__name__}"] = value
    return list(found.values())


def test_every_exception_class_of_the_product_has_the_one_root() -> None:
    classes = _error_classes()
    assert len(classes) > 20  # the walk found them
    # StopRequested is a signal to stop serving, not an error: it must escape `except
    # Exception` on purpose, so it is a BaseException.
    strays = [
        f"{c.__module__}.{c.__name__}"
        for c in classes
        if not issubclass(c, AuditorError) and c.__name__ != "StopRequested"
    ]
    assert strays == []


def test_an_unhandled_auditor_error_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", ["auditor"])
    from auditor.evidence.signing import SigningKeyError

    root = typer.Typer()

    @root.command()
    def probe() -> None:
        raise SigningKeyError("key.pem: not an Ed25519 key [x]")

    with pytest.raises(SystemExit) as exited:
        run_app(root)
    assert exited.value.code == ExitCode.CANNOT_RUN
    err = capsys.readouterr().err
    assert err == "error: key.pem: not an Ed25519 key [x]\n"


def test_other_exceptions_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["auditor"])
    root = typer.Typer()

    @root.command()
    def probe() -> None:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_app(root)


def _probe_app() -> typer.Typer:
    root = typer.Typer()

    @root.command()
    def probe(count: int = 1, verdict: int = 0) -> None:
        if verdict:
            raise typer.Exit(verdict)

    @root.command()
    def other() -> None:
        """A second command, so that the first is chosen by name."""

    return root


@pytest.mark.parametrize(
    "args",
    [["probe", "--count", "many"], ["probe", "--no-such-option"], ["no-such-command"]],
)
def test_a_usage_error_is_exit_3_never_the_inconclusive_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        run_app(_probe_app(), args)
    assert exited.value.code == ExitCode.CANNOT_RUN
    err = capsys.readouterr().err
    assert "Usage:" in err and "Error:" in err


@pytest.mark.parametrize("verdict", [0, 1, 2, 4])
def test_a_commands_own_exit_code_passes_through(verdict: int) -> None:
    with pytest.raises(SystemExit) as exited:
        run_app(_probe_app(), ["probe", "--verdict", str(verdict)])
    assert exited.value.code == verdict
