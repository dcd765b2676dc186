"""Shared look of every figure: font sizes, colours, display names and the figure factory.

Nothing here touches global matplotlib state (no rcParams, no pyplot): each figure is a
``matplotlib.figure.Figure`` built directly, so callers' settings and open pyplot figures
are never affected.
"""

from __future__ import annotations

from typing import Any

#: Literal value of ``cv2.COLORMAP_JET``; kept as a number so importing viz does not load cv2.
COLORMAP_JET = 2

TITLE_SIZE = 11
LABEL_SIZE = 10
TICK_SIZE = 9
SUPTITLE_SIZE = 13

#: Bar colours per pooling; GAP neutral, CA the accent colour, so CA stands out as the method.
POOLING_COLORS = {"gap": "#8C9BAB", "ca": "#D9622B"}
#: Line styles per pooling in the curves; the colour encodes the CAM method.
POOLING_LINESTYLES = {"gap": "--", "ca": "-"}
#: Extra colours for poolings other than GAP/CA (ablations such as "projca").
OTHER_COLORS = ("#4C72B0", "#55A868", "#8172B2", "#CCB974", "#64B5CD")
#: One colour per CAM method in the curves (colour-blind friendly "tab10" subset).
METHOD_COLORS = ("#1F77B4", "#2CA02C", "#9467BD", "#8C564B", "#E377C2", "#17BECF", "#BCBD22")

_METHOD_NAMES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "gradcampp": "Grad-CAM++",
    "gradcamplusplus": "Grad-CAM++",
    "scorecam": "Score-CAM",
    "raw": "Raw attention",
    "attention": "Raw attention",
    "rawattention": "Raw attention",
}
_POOLING_ORDER = ("gap", "ca")


def plain_text(text: Any) -> str:
    r"""``text`` escaped so that matplotlib shows it verbatim, never as mathtext.

    Matplotlib parses text between two unescaped ``$`` as mathtext: a class folder named
    ``$\bogus$`` raises at draw time, and ``$x$`` would be typeset. Every ``$`` becomes
    ``\$``, which matplotlib shows as a plain ``$`` (backslashes outside mathtext are already
    literal). Every text that reaches matplotlib in :mod:`xai_pool.viz` goes through here,
    after any line wrapping (so an escape is never split). With ``rcParams["text.usetex"]``
    text goes to LaTeX instead, and is not made safe by this.
    """
    return str(text).replace("$", r"\$")


def method_label(name: Any) -> str:
    """Display name of a CAM method: ``"gradcam"`` -> ``"Grad-CAM"``; unknown names unchanged."""
    text = str(name)
    key = text.lower().replace("-", "").replace("_", "").replace(" ", "")
    return _METHOD_NAMES.get(key, text)


def pooling_key(name: Any) -> str:
    """Canonical lower-case key of a pooling (``"GAP"`` -> ``"gap"``)."""
    return str(name).strip().lower()


def pooling_label(name: Any) -> str:
    """Display name of a pooling: ``"gap"`` -> ``"GAP"``, ``"ca"`` -> ``"CA"``."""
    return str(name).strip().upper()


def sort_poolings(names: list[str]) -> list[str]:
    """GAP first, then CA, then any other pooling in the order given (the paper's GAP | CA)."""
    known = [p for p in _POOLING_ORDER if p in names]
    return known + [p for p in names if p not in _POOLING_ORDER]


def pooling_color(name: str, others: list[str]) -> str:
    """Colour of a pooling key; poolings other than GAP/CA cycle through OTHER_COLORS."""
    if name in POOLING_COLORS:
        return POOLING_COLORS[name]
    return OTHER_COLORS[others.index(name) % len(OTHER_COLORS)]


def new_figure(width: float, height: float) -> Any:
    """A constrained-layout ``Figure`` that pyplot does not know about (so none leaks)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained", dpi=100)


def mpl_colormap(colormap: int) -> Any:
    """The exact matplotlib equivalent of an OpenCV colormap, for colour bars."""
    import cv2
    import numpy as np
    from matplotlib.colors import ListedColormap

    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1), colormap)
    return ListedColormap(lut[:, 0, ::-1] / 255.0)  # OpenCV lookup tables are BGR


def image_axes(ax: Any) -> None:
    """Hide ticks and frame but keep the axis labels visible (row labels use the y label)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
