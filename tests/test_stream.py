"""The CA block and stream: identities of the method (paper eq. 5, 6, 10)."""

from __future__ import annotations

import math

import pytest
import torch

from xai_pool.stream import CABlock, CAStream, StreamConfig, uniform_pool


def test_uniform_attention_pools_exactly_like_gap() -> None:
    torch.manual_seed(0)
    block = CABlock(6, 4)
    features = torch.randn(3, 6, 5, 7)
    _, attention, pooled = block(torch.zeros(3, 6), features)  # zero query -> uniform softmax
    assert torch.allclose(attention, torch.full_like(attention, 1 / 35))
    torch.testing.assert_close(pooled, uniform_pool(features), rtol=1e-6, atol=1e-6)


def test_attention_logits_are_the_class_agnostic_cam() -> None:
    torch.manual_seed(0)
    block = CABlock(8, 8)
    q, features = torch.randn(2, 8), torch.randn(2, 8, 4, 3)
    # eq. (5): sum_k q_k F^k / sqrt(d), computed channel by channel
    cam = sum(q[:, k, None, None] * features[:, k] for k in range(8)) / math.sqrt(8)
    torch.testing.assert_close(block.attention_logits(q, features).reshape(2, 4, 3), cam)


def test_block_output_is_linear_of_attention_weighted_sum() -> None:
    torch.manual_seed(0)
    block = CABlock(4, 3)
    q, features = torch.randn(1, 4), torch.randn(1, 4, 2, 2)
    next_q, attention, pooled = block(q, features)
    tokens = features.flatten(2)[0].T  # (p, d)
    a = torch.softmax(tokens @ q[0] / 2.0, dim=0)
    torch.testing.assert_close(attention.flatten(), a)
    torch.testing.assert_close(pooled[0], a @ tokens)
    torch.testing.assert_close(next_q, block.proj(pooled))


def test_multi_head_splits_channels() -> None:
    torch.manual_seed(0)
    block = CABlock(8, 8, heads=2)
    q, features = torch.randn(1, 8), torch.randn(1, 8, 3, 3)
    _, attention, pooled = block(q, features)
    assert attention.shape == (1, 2, 3, 3)
    for h in range(2):
        sub = CABlock(4, 4)
        _, a_h, p_h = sub(q[:, 4 * h : 4 * h + 4], features[:, 4 * h : 4 * h + 4])
        torch.testing.assert_close(attention[:, h : h + 1], a_h)
        torch.testing.assert_close(pooled[:, 4 * h : 4 * h + 4], p_h)


def test_project_kv_uses_projections() -> None:
    torch.manual_seed(0)
    block = CABlock(4, 4, project_kv=True)
    q, features = torch.randn(1, 4), torch.randn(1, 4, 2, 3)
    _, attention, pooled = block(q, features)
    tokens = features.flatten(2)[0].T
    keys, values = block.key(tokens), block.value(tokens)
    a = torch.softmax(keys @ q[0] / 2.0, dim=0)
    torch.testing.assert_close(attention.flatten(), a)
    torch.testing.assert_close(pooled[0], a @ values)


def test_softmax_is_safe_in_half_precision() -> None:
    block = CABlock(4, 4).to(torch.bfloat16)
    features = torch.full((1, 4, 2, 2), 300.0, dtype=torch.bfloat16)
    features[0, :, 0, 0] = 400.0
    _, attention, pooled = block(torch.ones(1, 4, dtype=torch.bfloat16), features)
    assert torch.isfinite(attention).all() and torch.isfinite(pooled).all()
    assert attention.flatten()[0] == pytest.approx(1.0)


def test_float64_stream_equals_a_float64_hand_computation() -> None:
    # the softmax is promoted to at least float32: a float64 model stays float64 end to end
    torch.manual_seed(0)
    stream = CAStream(StreamConfig(widths=(6, 4), out_dim=3)).double()
    features = [torch.randn(2, 6, 5, 4, dtype=torch.float64), torch.randn(2, 4, 3, 3, dtype=torch.float64)]
    pooled, attentions = stream(features)
    q = stream.query.expand(2, -1)
    for block, feature, attention in zip(stream.blocks, features, attentions, strict=True):
        tokens = feature.flatten(2).transpose(1, 2)  # (B, p, d)
        logits = (tokens @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(block.dim)
        a = torch.exp(logits - logits.amax(dim=1, keepdim=True))
        a = a / a.sum(dim=1, keepdim=True)
        assert attention.dtype == torch.float64
        torch.testing.assert_close(attention.flatten(1), a, rtol=0, atol=1e-12)
        q = (a.unsqueeze(1) @ tokens).squeeze(1) @ block.proj.weight.T + block.proj.bias
    assert pooled.dtype == torch.float64
    torch.testing.assert_close(pooled, q, rtol=0, atol=1e-12)


def test_softmax_of_half_precision_logits_is_taken_in_float32() -> None:
    torch.manual_seed(0)
    block = CABlock(4, 4).to(torch.float16)
    query, features = torch.ones(1, 4, dtype=torch.float16), torch.randn(1, 4, 2, 2).half()
    _, attention, _ = block(query, features)
    assert attention.dtype == torch.float32
    expected = block.attention_logits(query, features).float().softmax(dim=-1)
    torch.testing.assert_close(attention.flatten(1), expected.flatten(1), rtol=0, atol=0)


def test_linears_are_xavier_uniform_with_pytorch_default_biases() -> None:
    # The authors' block: nn.Linear's default bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), xavier weights.
    torch.manual_seed(0)
    block = CABlock(1024, 256, project_kv=True)
    for linear in (block.key, block.value, block.proj):
        fan_out, fan_in = linear.weight.shape
        xavier = math.sqrt(6 / (fan_in + fan_out))
        assert linear.weight.abs().max() <= xavier and linear.weight.abs().max() > 0.99 * xavier
        assert linear.weight.std().item() == pytest.approx(xavier / math.sqrt(3), rel=0.02)
        bound = 1 / math.sqrt(fan_in)
        assert linear.bias.abs().max() <= bound and linear.bias.abs().max() > 0.95 * bound
        assert linear.bias.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)
    biases = [linear.bias.clone() for linear in (block.key, block.value, block.proj)]
    block.reset_parameters()  # a re-initialisation redraws the biases too (randomisation sanity check)
    assert not any(
        torch.equal(b, linear.bias) for b, linear in zip(biases, (block.key, block.value, block.proj), strict=True)
    )


def test_initial_query_is_drawn_from_n11() -> None:
    torch.manual_seed(0)
    stream = CAStream(StreamConfig(widths=(4096,), out_dim=4))
    assert stream.query.mean().item() == pytest.approx(1.0, abs=0.05)
    assert stream.query.std().item() == pytest.approx(1.0, abs=0.05)


def test_class_specific_query_is_chosen_per_sample() -> None:
    stream = CAStream(StreamConfig(widths=(3, 5), out_dim=5, class_specific=True, num_classes=4))
    q = stream.initial_query(2, torch.tensor([3, 1]))
    torch.testing.assert_close(q, stream.query[[3, 1]])
    with pytest.raises(ValueError, match="class index"):
        stream.initial_query(2, None)


def test_bad_heads_and_feature_count() -> None:
    with pytest.raises(ValueError, match="divisor"):
        CABlock(6, 6, heads=4)
    stream = CAStream(StreamConfig(widths=(3, 5), out_dim=5))
    with pytest.raises(ValueError, match="2 blocks"):
        stream([torch.randn(1, 3, 2, 2)])
