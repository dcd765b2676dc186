# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # GAP vs CA: the metric report
#
# Does the CA-Stream make a classifier's saliency maps better? `xai_pool.report.compare`
# answers this on a dataset: for every image it computes the maps of each method (raw
# attention, Grad-CAM, Grad-CAM++, Score-CAM) with GAP and with CA pooling, scores each map
# with AD, AG, AI, insertion and deletion (the paper's Table 1) plus the pointing games when
# masks are available, on the model with the same pooling, and summarises everything with
# 95% bootstrap confidence intervals and paired Wilcoxon tests of CA vs GAP.
#
# This notebook runs a small version (60 test images, coarse insertion/deletion steps) in
# one to two minutes on an idle 2-core CPU. `xai-pool demo` runs the full one (200 images) and
# `xai-pool evaluate` does the same on your own ImageFolder data and model. It is
# independent of notebook 01: it trains its own small stream first.

# %%
# %matplotlib inline
import tempfile
import time
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

torch.manual_seed(0)
OUT = Path(tempfile.mkdtemp(prefix="xai_pool_report_"))  # nothing is written into the repository
print(f"xai_pool {xai_pool.__version__}; files go to {OUT}")

# %% [markdown]
# ## 1. A classifier with a trained stream
#
# The shipped ShapesScenes classifier, wrapped, and its stream trained briefly with the
# backbone frozen (one epoch on 1,000 images; notebook 01 explains the training). To use
# a stream you trained before (notebook 01, `xai-pool demo`, `xai-pool train`), set
# `STREAM_CHECKPOINT` to its `.pt` file instead.

# %%
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

# %% [markdown]
# ## 2. Run the comparison
#
# `compare(model, dataset)` takes a Dataset or DataLoader yielding `(image, label)` or
# `(image, label, mask)`. With masks it adds the pointing game (PG) and the energy pointing
# game (EPG). It explains the ground-truth class (`targets="label"`, the authors' protocol).
# `step` is the number of pixels changed per insertion/deletion step: 256 gives 16 steps
# (17 points per curve) on a 64x64 image, four times fewer forward passes than the default
# of one row (64 steps), at the price of a coarser area under the curve. Score-CAM, by far
# the most expensive method (one forward pass per channel of the target layer, 128 here),
# gets a larger batch (`method_kwargs`), which is faster on a CPU.

# %%
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

# %% [markdown]
# ## 3. The table
#
# Like the paper's Table 1: one row per method and pooling; each cell is the mean over images
# with its 95% bootstrap interval, and CA cells carry the p-value of the paired test against
# GAP for the same method. Section 5 explains how to read them.

# %%
display(Markdown(result.to_markdown()))
print(result.findings())

# %% [markdown]
# The per-image numbers behind the table, as a long pandas DataFrame (one row per image,
# method and pooling), and the means recomputed from it:

# %%
df = result.to_pandas()
display(df.head())
df.groupby(["method", "pooling"], sort=False)[result.metrics].mean().round(2)

# %% [markdown]
# ## 4. Figures
#
# `result.figures()` returns the report's figures (matplotlib `Figure` objects, keyed by file
# name). First the maps of the first images, GAP | CA per method (the paper's Figure 2
# layout; the row label shows each pooling's prediction):

# %%
figures = result.figures()
print(list(figures))
figures["side_by_side"]

# %% [markdown]
# The raw attention of the stream on the same images (class-agnostic: the same map whatever
# class is explained):

# %%
figures["attention_grid"]

# %% [markdown]
# **Insertion and deletion curves**, averaged over the images: the probability of the true class
# as pixels are revealed (insertion; a curve that rises early is better) or removed (deletion;
# a curve that falls early is better), in the order of each map. GAP is dashed, CA solid; the
# legend gives the area under each curve, the I and D columns of the table.

# %%
figures["insertion_curves"]

# %%
figures["deletion_curves"]

# %% [markdown]
# **Every metric as bars**, with 95% intervals as error bars (GAP grey, CA orange), accuracy
# included. Each panel title says which direction is better.

# %%
figures["metric_bars"]

# %% [markdown]
# ## 5. How to read the statistics
#
# **The metrics** (all in percent, per image, then averaged; the arrow in the table header gives
# the better direction). Each map S is upsampled to the image and min-max normalised to [0, 1].
# p is the softmax probability of the explained class (here the ground-truth label) on the
# image x, scored by the model *with the same pooling as the map*.
#
# | metric | what it measures | better |
# |---|---|---|
# | **AD**, Average Drop | the image is masked by the map in pixel space, `E = normalize(denormalize(x) * S)`; with o the probability on E: `100 max(0, p - o) / p`. How much confidence is lost when only the highlighted part is kept. | lower ↓ |
# | **AG**, Average Gain | `100 max(0, o - p) / (1 - p)`: how much confidence the masked image *gains*. 0 when p = 1 (no room to gain). | higher ↑ |
# | **AI**, Average Increase | 100 if o > p, else 0; its mean is the share of images whose masked version is more confident. | higher ↑ |
# | **I**, Insertion | start from a blurred copy of the image and reveal its pixels in order of decreasing saliency, `step` pixels at a time; area under the probability curve (trapezoid over the fraction of pixels revealed). | higher ↑ |
# | **D**, Deletion | start from the image and replace its pixels by zeros of the normalised input (the dataset's mean colour) in the same order; area under the curve. | lower ↓ |
# | **PG**, pointing game | 100 if the maximum of the map lies on the target's mask (tolerance 0 px), else 0; the mean is the hit rate. | higher ↑ |
# | **EPG**, energy pointing game | share of the map's mass (of the min-max normalised S) inside the target's mask. | higher ↑ |
#
# AD, AG, AI, I and D are the paper's Table 1 columns; PG and EPG need masks, which
# ShapesScenes has. Raw attention exists only with CA, so it has no GAP row and no p-value.
# Every choice (masking space, substrates, ties, constant maps) is documented in
# `docs/metrics.md`.
#
# **The interval** `[low, high]` in each cell is a **95% bootstrap confidence interval of the
# mean** over images (percentile method, 10,000 resamples of the images, seeded so that it is
# reproducible). It says how much the mean would move if the test images were drawn again from
# the same distribution. It does *not* cover other sources of variation: another training seed
# of the stream, another classifier, another dataset.
#
# **The p-value** next to a CA cell is a **paired, two-sided Wilcoxon signed-rank test** of the
# per-image differences CA − GAP, for the same method and metric on the same images (zero
# differences are dropped; if every difference is zero, p = 1). The null hypothesis is that
# the differences are distributed symmetrically around zero, i.e. neither pooling is
# systematically better on this metric. `findings()` calls a difference significant when
# p < 0.05 and names the winner in the metric's own direction (for AD and D, lower wins).
#
# **Why paired.** On many metrics images differ much more from each other than the two
# poolings differ on one image: some targets are easy to point at or to keep the class with,
# for every method, some hard. Both poolings are scored on the same images, so the test looks at the difference *within* each image and the image-to-image
# variation cancels out. That is why a difference can be significant although the two cells'
# intervals overlap: the per-cell intervals include the image-to-image spread, the paired test
# does not. Do not judge significance by overlapping intervals; the interval of the *mean
# difference* is what `xai_pool.metrics.compare` returns (below).
#
# Some caveats:
#
# - The Wilcoxon test is about the location of the differences (roughly their median), while
#   the cells show means; with skewed differences the two can disagree in sign.
# - AI and PG are 0/100 per image: most differences are 0 and are dropped, so the test only
#   sees the images where the two poolings disagree (close to a sign test) and has little power.
# - **Multiple comparisons.** The table holds 3 methods x 7 metrics = 21 tests. If there were
#   no real difference at all, about one of them would still come out below 0.05 by chance.
#   The report therefore adjusts the p-values of all its CA-vs-GAP tests together, with Holm's
#   method by default (valid whatever the dependence between the tests, and the tests here are
#   far from independent: AD, AG and AI share the same masked image, I and D the same pixel
#   ranking); the p in the CA cells and the findings use the adjusted p, the raw p is kept
#   beside it (`result.tests`, and the `_p_adjusted` columns of metrics.csv).
#   `compare(..., p_adjustment="bh")` controls the false discovery rate instead.
# - **Few images, wide intervals.** The interval's width shrinks like 1/√n. This notebook uses
#   60 images so that it runs in a couple of minutes: its intervals are about √(200/60) ≈ 1.8
#   times wider than those of `xai-pool demo` (200 images), and for a 0/100 metric such as AI
#   or PG the half-width is still around ±12 points at n = 60. Read the numbers here as a
#   demonstration of the tool, not as a result; rerun with more images (and the default `step`)
#   before drawing conclusions.
# - The accuracy row has a bootstrap interval but no test (a paired test of accuracy would be
#   McNemar's).

# %% [markdown]
# **The paired comparison for one method**: `xai_pool.metrics.compare(ca, gap)` gives, per
# metric, both means, the mean difference CA − GAP with its bootstrap interval, and the
# Wilcoxon p-value (the same p as in the table). Usually a small p goes with an interval that
# excludes 0, but not always: the interval is about the *mean* difference, the test about
# the typical (median-like) difference, and a few large differences move the mean a lot.

# %%
from xai_pool.metrics import compare as paired_compare

METHOD = "scorecam"
ca, gap = result.per_image[(METHOD, "ca")], result.per_image[(METHOD, "gap")]
paired = paired_compare({m: ca[m] for m in result.metrics}, {m: gap[m] for m in result.metrics})
pd.DataFrame(paired).T[["mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value", "n"]].rename(
    columns={"mean_a": "CA", "mean_b": "GAP", "diff": "CA - GAP"}).round(3)

# %% [markdown]
# Why pairing matters, in a picture: per image, the energy pointing game of the same method
# with GAP (x) and with CA (y). The points spread along the diagonal (targets differ in how
# easy they are to point at) but stay close to it, so the paired differences (right) vary
# far less than the scores themselves. The per-cell intervals of the table carry the
# image-to-image spread; the paired test only sees the differences.

# %%
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

# %% [markdown]
# **Holm's adjustment**, by hand, of all the CA-vs-GAP p-values of the table (the multiple
# comparisons caveat above): sort the m p-values, multiply the k-th smallest by (m − k + 1),
# make the sequence non-decreasing, cap at 1. It reproduces the report's own adjusted p
# (`p_adjusted`); a finding that stays below 0.05 after adjustment is robust to the number of
# tests.

# %%
rows = [r for r in result.summary if r["pooling"] == "ca" and r["p_value"] is not None]
p = np.array([r["p_value"] for r in rows])
order = np.argsort(p)
adjusted = np.empty_like(p)
adjusted[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
assert np.allclose(adjusted, [r["p_adjusted"] for r in rows])  # the report's own Holm adjustment
tests = pd.DataFrame({
    "method": [r["method"] for r in rows],
    "metric": [r["metric"] for r in rows],
    "CA - GAP": [r["diff_ca_minus_gap"] for r in rows],
    "p": p,
    "p (Holm)": adjusted,
})
print(f"{len(p)} tests: {(p < 0.05).sum()} below 0.05 unadjusted, {(adjusted < 0.05).sum()} after Holm")
tests.sort_values("p").round(4)

# %% [markdown]
# ## 6. Save the report
#
# The same folder `xai-pool evaluate` writes, whole or not at all: a self-contained HTML page
# (figures embedded), the tables as Markdown, CSV and JSON (with versions and configuration),
# every per-image value, the figures, and `manifest.json` last (the completion marker that
# `xai_pool.report.is_complete` checks). `result.to_html(path)`, `to_csv`, ... write single files.

# %%
from xai_pool.report import is_complete

report_dir = OUT / "report"
files = result.write(report_dir, title="GAP vs CA on ShapesScenes")
for path in files:
    print(f"{path.relative_to(report_dir)}  ({path.stat().st_size:,} bytes)")
print("complete:", is_complete(report_dir))
