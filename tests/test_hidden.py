"""HiddenMixup: mixing at a hidden layer, checked against the same steps done by hand."""

import random

import numpy as np
import oracle
import pytest
import torch
from torch import nn

import kmixup
from kmixup import functional as F


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 5)
    ).double()


def batch(n=8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 10, generator=g, dtype=torch.float64), torch.randint(5, (n,), generator=g)


def soft_ce(logits, target):
    return torch.sum(-target * logits.log_softmax(-1), -1).mean()


@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf", "none"])
def test_mixes_the_layer_output_with_its_own_similarity(warping):
    model, (x, y) = mlp(), batch()
    mixer = kmixup.KernelMixup(num_classes=5, warping=warping, label_smoothing=0.1)
    hidden = kmixup.HiddenMixup(model, "1", mixer)
    out, mixed_y = hidden(x, y)
    perm, lam = mixer.last_perm, mixer.last_lam

    h = model[1](model[0](x))
    expected_coeff = oracle.coefficients(h.detach().numpy(), perm.numpy(), lam.numpy(),
                                         warping=warping)
    np.testing.assert_allclose(mixer.last_coeff.numpy(), expected_coeff, rtol=1e-9, atol=1e-12)
    h_mixed = F.interpolate(h, perm, mixer.last_coeff)
    expected_out = model[4](model[3](model[2](h_mixed)))
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(
        mixed_y, F.mix_targets(y, perm, mixer.last_coeff, 5, label_smoothing=0.1)
    )


def test_gradients_flow_through_the_mixed_activations():
    model, (x, y) = mlp(), batch()
    mixer = kmixup.KernelMixup(num_classes=5)
    out, mixed_y = kmixup.HiddenMixup(model, "1", mixer)(x, y)
    soft_ce(out, mixed_y).backward()
    got = [p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    h = F.interpolate(model[1](model[0](x)), mixer.last_perm, mixer.last_coeff)
    soft_ce(model[4](model[3](model[2](h))), mixed_y).backward()
    for g, p in zip(got, model.parameters()):
        assert g.abs().sum() > 0  # the layers below the mixing point learn too
        torch.testing.assert_close(g, p.grad)


def test_plain_forward_is_untouched_and_remove_detaches():
    model, (x, y) = mlp(), batch()
    clean = model(x)
    hidden = kmixup.HiddenMixup(model, ["1", "3"], kmixup.KernelMixup(num_classes=5))
    hidden(x, y)
    torch.testing.assert_close(model(x), clean)
    hidden.remove()
    assert not model[1]._forward_hooks and not model[3]._forward_hooks


def test_several_layers_draw_one_per_call_from_python_random():
    model, (x, y) = mlp(), batch()
    seen = []
    for name in ("1", "3"):
        model.get_submodule(name).register_forward_pre_hook(
            lambda m, inputs, name=name: seen.append(name)
        )
    mixed_at = []
    hidden = kmixup.HiddenMixup(model, ["1", "3"], kmixup.KernelMixup(num_classes=5))
    for seed in range(12):
        random.seed(seed)
        expected = ["1", "3"][random.randrange(2)]
        random.seed(seed)
        out, _ = hidden(x, y)
        h = model[1](model[0](x)) if expected == "1" else model[3](model[2](model[1](model[0](x))))
        mixer = hidden.mixer
        h_mixed = F.interpolate(h, mixer.last_perm, mixer.last_coeff)
        tail = model[2:] if expected == "1" else model[4:]
        torch.testing.assert_close(out, tail(h_mixed))
        mixed_at.append(expected)
    assert set(mixed_at) == {"1", "3"}


def test_autocast_keeps_the_activation_dtype_and_float32_coefficients():
    model = mlp().float()
    x, y = batch()
    captured = []
    model[2].register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0]))
    mixer = kmixup.KernelMixup(num_classes=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, mixed_y = kmixup.HiddenMixup(model, "1", mixer)(x.float(), y)
    assert captured[0].dtype == torch.bfloat16
    assert mixer.last_coeff.dtype == torch.float32 and mixed_y.dtype == torch.float32
    assert out.dtype == torch.bfloat16


def test_channels_last_activations_stay_channels_last():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last)
    captured = []
    model[2].register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0]))
    kmixup.HiddenMixup(model, "1", kmixup.KernelMixup(num_classes=4))(x, torch.arange(4))
    assert captured[0].is_contiguous(memory_format=torch.channels_last)
    assert not captured[0].is_contiguous()


def test_compiles_to_one_graph():
    model, (x, y) = mlp(), batch()
    hidden = kmixup.HiddenMixup(model, "1", kmixup.KernelMixup(num_classes=5))

    def step(x, y):
        out, mixed_y = hidden(x, y)
        return soft_ce(out, mixed_y)

    torch.manual_seed(0)
    eager = step(x, y)
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    torch.manual_seed(0)
    torch.testing.assert_close(compiled(x, y), eager)


def test_bad_arguments_raise_named_errors():
    model, (x, y) = mlp(), batch()
    mixer = kmixup.KernelMixup(num_classes=5)
    with pytest.raises(ValueError, match="layers: 'nope'"):
        kmixup.HiddenMixup(model, "nope", mixer)
    with pytest.raises(ValueError, match="layers"):
        kmixup.HiddenMixup(model, nn.ReLU(), mixer)
    with pytest.raises(ValueError, match="layers"):
        kmixup.HiddenMixup(model, [], mixer)
    with pytest.raises(TypeError, match="mixer"):
        kmixup.HiddenMixup(model, "1", lambda x, y: (x, y))
    with pytest.raises(TypeError, match="model"):
        kmixup.HiddenMixup(lambda x: x, "1", mixer)

    class TupleOut(nn.Module):
        def forward(self, x):
            return x, x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair, self.unused = TupleOut(), nn.Linear(10, 10)

        def forward(self, x):
            return self.pair(x)[0]

    net = Net()
    with pytest.raises(TypeError, match="layers: TupleOut must output one floating tensor"):
        kmixup.HiddenMixup(net, "pair", mixer)(x, y)
    with pytest.raises(RuntimeError, match="did not run"):
        kmixup.HiddenMixup(net, "unused", mixer)(x, y)
    with pytest.raises(ValueError, match="target must have batch size"):
        kmixup.HiddenMixup(model, "1", mixer)(x, y[:3])
