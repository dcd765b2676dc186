"""Write the measured supported-models table into docs/core.md (never typed by hand).

Profiles every model of the contract-test zoo (tests/zoo.py: every torchvision classifier,
the smallest timm model of every family, the hand-written models) and writes one row per
model between the ``supported-models`` markers of docs/core.md. The contract test
(tests/test_adapters_contract.py) checks each row against what it measures.

    python scripts/update_supported_models.py              # rewrite the table (about 10 min on 2 cores)
    python scripts/update_supported_models.py --list-timm  # print the smallest model of every timm family
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import zoo  # noqa: E402
from xai_pool.adapters import ProfileError, resolve_attention_pooling, resolve_profile  # noqa: E402

START, END = "<!-- supported-models:start -->", "<!-- supported-models:end -->"
ATTENTION_START, ATTENTION_END = "<!-- own-attention:start -->", "<!-- own-attention:end -->"


def _row(group: str, name: str, model: torch.nn.Module, kwargs: dict) -> str:
    try:
        profile = resolve_profile(model, **kwargs)
    except ProfileError as exc:
        return zoo.support_row(group, name, error=zoo.refusal_reason(str(exc)))
    return zoo.support_row(group, name, profile)


def rows() -> list[str]:
    """Every row of the table, in order: torchvision, timm, hand-written."""
    out = []
    for name in zoo.torchvision_names():
        out.append(_row("torchvision", name, zoo.torchvision_model(name), {"arch": name}))
        print(out[-1], flush=True)
    for family in sorted(zoo.TIMM_SMALLEST):
        name = zoo.TIMM_SMALLEST[family]
        if family in zoo.TIMM_SKIPPED:
            out.append(f"| timm | `{name}` | not run | {zoo.TIMM_SKIPPED[family]} |")
        else:
            out.append(_row("timm", name, zoo.timm_model(family), {}))
        print(out[-1], flush=True)
    for name in zoo.CUSTOM:
        model, kwargs = zoo.custom_model(name)
        out.append(_row("custom", name, model, kwargs))
    return out


def attention_rows() -> list[str]:
    """Rows of the own-attention table: models that pool by attention and the module read."""
    out = []
    for name in zoo.TORCHVISION_OWN_ATTENTION:
        out.append(zoo.attention_row("torchvision", name, resolve_attention_pooling(zoo.torchvision_model(name))))
    for family in zoo.TIMM_OWN_ATTENTION:
        pooling = resolve_attention_pooling(zoo.timm_model(family))
        out.append(zoo.attention_row("timm", zoo.TIMM_SMALLEST[family], pooling))
    return out


def _replace(text: str, start: str, end: str, table: str) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"docs/core.md has no {start} ... {end} markers")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{table}\n{end}{after}"


def list_timm() -> None:
    """Print the smallest model (parameters, counted on the meta device) of every timm family."""
    import timm

    for family in timm.list_modules():
        best = None
        for name in timm.list_models(module=family):
            try:
                with torch.device("meta"):
                    model = timm.create_model(name, pretrained=False)
            except Exception:  # some entries need extra packages or arguments
                continue
            count = sum(p.numel() for p in model.parameters())
            if best is None or count < best[1]:
                best = (name, count)
        print(f'    "{family}": "{best[0] if best else ""}",')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list-timm", action="store_true", help="print the smallest model of every timm family")
    parser.add_argument("--attention-only", action="store_true", help="rewrite only the own-attention table")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.list_timm:
        list_timm()
        return
    docs = ROOT / "docs" / "core.md"
    text = docs.read_text()
    attention = "\n".join(
        [
            "| zoo | model | pooling attention | read as | default CAM layer |",
            "|---|---|---|---|---|",
            *attention_rows(),
        ]
    )
    text = _replace(text, ATTENTION_START, ATTENTION_END, attention)
    if not args.attention_only:
        table = "\n".join(["| zoo | model | result | how |", "|---|---|---|---|", *rows()])
        text = _replace(text, START, END, table)
    docs.write_text(text)
    print(f"wrote {docs}")


if __name__ == "__main__":
    main()
