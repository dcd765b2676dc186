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
# # Quickstart: CA-Stream attention pooling
#
# A CNN classifier usually ends with **global average pooling (GAP)**: the last feature map
# is averaged over all positions and a linear classifier reads the average.
# **CA-Stream** (Torres et al., *Attention-based pooling for interpretable image
# recognition*) runs a small stream of cross-attention blocks beside the frozen network: a
# learned query attends over the feature map after the stem and after every stage, and its
# final state **replaces the GAP vector** in front of the unchanged classifier. The
# attention of the last block is a class-agnostic saliency map (the paper's eq. 5), so every
# prediction comes with a free explanation, the *raw attention*.
#
# In this notebook you will:
#
# 1. look at the embedded benchmark (ShapesScenes, generated offline);
# 2. wrap a pretrained GAP classifier with `xai_pool.attach_stream` and switch its pooling;
# 3. train the stream with the backbone frozen (`xai_pool.train_stream`);
# 4. compare the accuracy of GAP and CA;
# 5. explain test images with raw attention, Grad-CAM, Grad-CAM++ and Score-CAM for both
#    poolings (`xai_pool.explain`) and draw them side by side;
# 6. save and reload the stream;
# 7. see how to do the same with your own model (e.g. a torchvision ResNet-50).
#
# Everything runs offline on a CPU in a minute or two. Files go to a temporary folder.

# %%
# %matplotlib inline
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

# %% [markdown]
# ## 1. The data: ShapesScenes
#
# 64x64 scenes, each with one *target* shape (its class: circle, square, star, ...) among
# distractors (ellipses and bars) on a textured background. Every scene is rendered from its
# index and a seed, nothing is downloaded, and the target's exact pixel mask comes with it,
# so we can also check whether a saliency map points at the object.

# %%
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

# %% [markdown]
# ## 2. Wrap the classifier and switch its pooling
#
# `xai_pool.zoo.shapes_resnet(pretrained=True)` is a small ResNet with GAP, trained on
# ShapesScenes; its weights ship inside the package. `attach_stream` freezes it (every
# parameter gets `requires_grad=False`, eval mode) and adds a trainable `.stream`. No module
# is replaced: with `pooling="gap"` the model's own forward runs untouched, so its logits are
# those of the original classifier, bit for bit. `model.pooling_as("gap")` switches
# temporarily; `model.pooling = "gap"` permanently. The default is `"ca"`.

# %%
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

# %% [markdown]
# Before training, the stream is random and CA pooling is useless.
# `xai_pool.train.evaluate_stream` measures the top-1 accuracy of both poolings:

# %%
from xai_pool.train import evaluate_stream

test_loader = DataLoader(TensorDataset(test_images, test_labels), batch_size=200)
before = evaluate_stream(model, test_loader)
print(f"untrained stream: GAP {before['acc_gap']:.1%}, CA {before['acc_ca']:.1%}")

# %% [markdown]
# ## 3. Train the stream (backbone and classifier frozen)
#
# Only the stream's parameters are optimised. The defaults of `train_stream` are the paper's
# ImageNet recipe (SGD, momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 every 30
# epochs; the paper trains 90 epochs). Here a tiny budget is enough: 1,000 images, 2 epochs,
# lr 0.05 with a cosine schedule (the schedule of `xai-pool demo`). `out_dir` receives `best.pt` and
# `last.pt` (stream checkpoints), `train_state.pt` (to continue with `resume=True`) and
# `history.jsonl`.

# %%
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

# %% [markdown]
# ## 4. Accuracy: GAP vs CA
#
# The stream should keep the classifier's accuracy (the paper: ResNet-50 on ImageNet, 74.55%
# with GAP and 74.70% with CA). On 200 test images a difference of a few points is within
# noise: notebook `02_gap_vs_ca_report` gives confidence intervals.

# %%
after = evaluate_stream(model, test_loader)
print(f"test accuracy on {after['count']} images: GAP {after['acc_gap']:.1%}, CA {after['acc_ca']:.1%}; "
      f"same prediction on {after['agreement']:.1%}")

# %% [markdown]
# ## 5. Explain: raw attention and CAM methods, GAP vs CA
#
# `xai_pool.explain(model, images, method, pooling=...)` returns one map per image, float32
# `(B, H, W)` in [0, 1] at the input resolution. Any pytorch-grad-cam method works, for either
# pooling; `"raw_attention"` is the stream's own attention (CA only, one forward pass). By
# default each pooling explains the class *it* predicts; pass `targets=labels.tolist()` to
# explain the true class instead. The model is left exactly as it was (pooling, modes, no
# hooks).

# %%
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

# %% [markdown]
# The paper's Figure 2 layout: one row per image, the input, the raw attention, then each CAM
# method with GAP and CA side by side. Red is high, blue low; **each map is min-max normalised
# on its own**, so compare *where* maps are high, not how high. The raw attention is
# class-agnostic (what the pooled vector is built from); within a CAM method the GAP and CA
# maps explain the same layer and are expected to look similar, differences in how tightly
# they cover the target are what the metrics of notebook 02 quantify. The row label gives
# the prediction of each pooling: when they differ, the two maps explain different classes.

# %%
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

# %% [markdown]
# `model.attention(x)` returns the softmax attention of **every** block of the stream, from the
# block after the stem (fine, 32x32) to the last one (8x8, the one that pools the features the
# classifier reads). `attention_grid` draws them per image, like the paper's Figure 4.

# %%
with torch.no_grad():
    blocks = model.attention(images)  # one (B, heads, h, w) map per block, each summing to 1
print("attention per block:", [tuple(b.shape) for b in blocks])
xai_pool.viz.attention_grid(
    images, blocks, titles=[f"true: {names[int(c)]}" for c in labels],
    mean=test_set.mean, std=test_set.std, suptitle="Attention of every block of the stream",
)

# %% [markdown]
# ## 6. Save and reload the stream
#
# `save_stream` writes the stream weights, its configuration and a fingerprint of the
# backbone; `load_stream` refuses a checkpoint made for another backbone or other weights.

# %%
xai_pool.save_stream(model, OUT / "stream.pt")
fresh = xai_pool.attach_stream(xai_pool.zoo.shapes_resnet(pretrained=True))
xai_pool.load_stream(fresh, OUT / "stream.pt")
with torch.no_grad():
    same = torch.allclose(fresh(images), model(images))
print("reloaded stream gives the same CA logits:", same)

# %% [markdown]
# ## 7. Your own model
#
# `attach_stream` knows torchvision and timm ResNets, ConvNeXts and EfficientNets (and any
# model given a `StreamSpec`). `xai_pool.classifiers.build_classifier(arch, weights)` builds a
# torchvision or timm classifier by name and loads a **local** state-dict file (nothing is
# downloaded). For a ResNet-50 trained on ImageNet, with your weights file:
#
# ```python
# from xai_pool.classifiers import IMAGENET_MEAN, IMAGENET_STD, build_classifier
#
# model = xai_pool.attach_stream(build_classifier("resnet50", "resnet50.pth"))
# history = xai_pool.train_stream(model, train_loader, epochs=90, val_loader=val_loader, out_dir="runs/r50")
# maps = xai_pool.explain(model, images, "gradcam", pooling="ca")   # images normalised with IMAGENET_MEAN/STD
# ```
#
# or from the command line (`torchrun --nproc_per_node=N -m xai_pool train ...` on several GPUs;
# see `examples/imagenet/README.md` for the paper's ImageNet run):
#
# ```bash
# xai-pool train --data IMAGENET --arch resnet50 --weights resnet50.pth --out runs/r50
# xai-pool evaluate --data IMAGENET --arch resnet50 --weights resnet50.pth --stream runs/r50/best.pt --out report/ --limit 1000
# ```
#
# The cell below builds a ResNet-50 with random weights (no weights file needed) just to show
# where the stream attaches.

# %%
from xai_pool.classifiers import build_classifier

r50 = xai_pool.attach_stream(build_classifier("resnet50"))  # pass your weights file as the 2nd argument
print(f"ResNet-50 stream: {sum(p.numel() for p in r50.stream.parameters()):,} parameters (paper: 6.96M)")
print("blocks read:", ", ".join(r50.spec.taps), "and the input of", r50.spec.pool,
      "| default CAM layer:", r50.spec.target_layer)

# %% [markdown]
# **Next:** `02_gap_vs_ca_report.ipynb` measures GAP vs CA with AD, AG, AI, insertion,
# deletion and the pointing games, with confidence intervals and paired tests.
