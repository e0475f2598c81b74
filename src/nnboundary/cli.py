"""The ``nnboundary`` command line: a thin layer over the library."""

from __future__ import annotations

import typer

from nnboundary import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Where does a deep network put its decision boundary? Exact max-margin SVMs on a "
                       "network's last hidden layer, compared with its last layer.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nnboundary {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """nnboundary command line."""


@app.command()
def demo(seed: int = typer.Option(0, help="Seed of the generated data.")) -> None:
    """Solve a hard-margin SVM on generated separable features and print its certificate."""
    import numpy as np

    from nnboundary.svm import MaxMarginClassifier

    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(0.2, 0.1, (500, 2)), rng.normal(0.8, 0.1, (500, 2))]
    y = np.r_[np.zeros(500, int), np.ones(500, int)]
    clf = MaxMarginClassifier().fit(X, y)
    typer.echo(f"settings: MaxMarginClassifier(C=None, bias='free'), two blobs (0.2,0.2)/(0.8,0.8) std 0.1, "
               f"n=1000, seed={seed}")
    typer.echo(f"w = {clf.coef_[0].round(6).tolist()}  b = {clf.intercept_[0]:.6f}")
    typer.echo(f"margin = {clf.margin_:.6f}  support vectors = {len(clf.support_)}  "
               f"max violation = {clf.max_violation_:.1e}  duality gap = {clf.duality_gap_:.1e}  "
               f"rounds = {clf.n_iter_}")
