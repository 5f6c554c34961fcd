"""``gpucost plot FILE [--output PNG|SVG]``: draw a calibration file's sweeps.

Registered in ``estimator/cli/app.py`` with ``app.command("plot")(plot.plot_cmd)``. matplotlib (the
``plot`` extra) is imported only to write an image; without ``--output`` the plot is text on stdout.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer

from estimator.errors import GpucostError


def _matplotlib_installed() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_cmd(
    file: Annotated[Path, typer.Argument(
        help="Calibration file written by `gpucost profile` (YAML).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write the plot to this .png or .svg file (needs matplotlib: the plot extra, "
                               "pip install '.[plot]'). Default: a text plot on stdout.",
        show_default=False)] = None,
) -> None:
    """Plot a calibration file: matmul TFLOP/s against matrix size per dtype with the datasheet
    peaks (on a GPU the wave-quantisation dips show in the per-shape points), MLP training TFLOP/s
    against width, and bus bandwidth against message size per collective when the file has them.

    Example: gpucost plot gpucost-calibration.yaml --output sweep.png
    """
    from estimator.records.calibration import read_calibration
    from estimator.records.plot import NO_MATPLOTLIB, check_output, nothing_to_plot, panels, text_plot, write_image

    if output is not None:
        check_output(output)
    record = read_calibration(file)
    if not panels(record):
        raise nothing_to_plot(str(file), record)
    if output is None:
        typer.echo(text_plot(record, width=min(shutil.get_terminal_size((100, 24)).columns, 120)))
        return
    if not _matplotlib_installed():
        typer.echo(text_plot(record, width=min(shutil.get_terminal_size((100, 24)).columns, 120)))
        raise GpucostError(f"{output} was not written (the text plot is above): {NO_MATPLOTLIB}")
    write_image(record, output)
    typer.echo(f"Wrote {output}", err=True)
