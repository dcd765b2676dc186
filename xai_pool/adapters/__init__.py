"""Where a CA-Stream plugs into a backbone: which stage outputs it reads, which pooling it replaces.

A :class:`StreamSpec` names modules of the user's model by their dotted path (as in
``model.named_modules()``):

- ``taps``: the modules whose outputs feed the stream's blocks, in forward order, *except*
  the last block, which always reads the input of the pooling module (exactly what GAP
  would average, so GAP and CA pool the same tensor);
- ``pool``: the global average pooling module the stream replaces (its output shape,
  (B, C) or (B, C, 1, 1), is kept so the classifier after it runs unchanged);
- ``target_layer``: the default CAM target layer (the last stage), used by the saliency tools.

A model class may also declare its placement with a ``xai_pool_spec`` attribute.
Built-in specs exist for torchvision ResNet/ResNeXt/Wide-ResNet, ConvNeXt, EfficientNet
(v1, v2) and timm models (via their ``feature_info``); anything else needs an explicit spec.
"""

from __future__ import annotations

from .spec import StreamSpec, infer_spec, resolve_module

__all__ = ["StreamSpec", "infer_spec", "resolve_module"]
