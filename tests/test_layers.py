"""The convolution of a concatenation computed part by part (``modeling.layers``) against the
convolution of the concatenated tensor itself: values and gradients."""
import pytest
import torch
from torch import nn

from sln_amodal.modeling.layers import conv_over_parts, conv_stack, conv_stack_over_parts, constant_map_conv


def random_parts(g, num_rois, size, channels, constant):
    """Parts of the given channel counts; those flagged ``constant`` are (R, C, 1, 1)."""
    return [torch.randn(num_rois, c, *((1, 1) if flat else size), generator=g, dtype=torch.float64)
            for c, flat in zip(channels, constant)]


def concatenated(parts, size):
    return torch.cat([p.expand(-1, -1, *size) for p in parts], dim=1)


@pytest.mark.parametrize("dilation", [1, 2, 4])
@pytest.mark.parametrize("size", [(14, 14), (5, 9), (1, 3)])
def test_conv_over_parts_equals_the_convolution_of_the_concatenation(dilation, size):
    g = torch.Generator().manual_seed(dilation)
    channels, constant = (6, 3, 5, 2), (False, False, True, False)
    conv = nn.Conv2d(sum(channels), 7, 3, padding=dilation, dilation=dilation).double()
    parts = random_parts(g, 4, size, channels, constant)
    expected = conv(concatenated(parts, size))
    torch.testing.assert_close(conv_over_parts(conv, parts), expected, rtol=1e-10, atol=1e-10)


def test_channels_last_parts_give_a_channels_last_sum_of_the_same_values():
    # Mixed memory orders would make each part's addition a strided copy (SLN head inference time).
    g = torch.Generator().manual_seed(5)
    size, channels, constant = (14, 14), (8, 4, 8), (False, False, True)
    conv = nn.Conv2d(sum(channels), 6, 3, padding=2, dilation=2)
    parts = [p.float().contiguous(memory_format=torch.channels_last)
             for p in random_parts(g, 3, size, channels, constant)]
    out = conv_over_parts(conv, parts)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, conv(concatenated(parts, size)), rtol=1e-5, atol=1e-5)


def test_a_constant_map_reads_the_zero_padding_at_the_borders():
    conv = nn.Conv2d(2, 1, 3, padding=2, dilation=2, bias=False).double()
    nn.init.ones_(conv.weight)
    out = constant_map_conv(conv, conv.weight, torch.ones(1, 2, dtype=torch.float64), (5, 5))[0, 0]
    # The centre cell sees all 9 taps of both channels, a corner 4, the middle of an edge 6.
    assert out[2, 2] == 18 and out[0, 0] == 8 and out[0, 2] == 12


def test_conv_stack_over_parts_gives_the_stacks_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    stack, _ = conv_stack(9, (8, 4), (2, 1))
    stack = stack.double()
    parts = [p.requires_grad_() for p in random_parts(g, 3, (7, 7), (4, 2, 3), (False, False, True))]
    by_parts = conv_stack_over_parts(stack, parts)
    by_parts.square().sum().backward()
    gradients = [p.grad.clone() for p in parts] + [w.grad.clone() for w in stack.parameters()]
    for tensor in [*parts, *stack.parameters()]:
        tensor.grad = None
    whole = stack(concatenated(parts, (7, 7)))
    whole.square().sum().backward()
    torch.testing.assert_close(by_parts, whole, rtol=1e-10, atol=1e-10)
    for got, expected in zip(gradients, [p.grad for p in parts] + [w.grad for w in stack.parameters()]):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_an_empty_stack_returns_the_concatenation():
    g = torch.Generator().manual_seed(1)
    parts = random_parts(g, 2, (3, 4), (2, 1), (False, True))
    empty, _ = conv_stack(3, ())
    assert torch.equal(conv_stack_over_parts(empty, parts), concatenated(parts, (3, 4)))


def test_parts_that_do_not_fill_the_convolution_fail():
    conv = nn.Conv2d(5, 2, 3, padding=1)
    with pytest.raises(ValueError, match="4 channels, the convolution reads 5"):
        conv_over_parts(conv, [torch.zeros(1, 4, 3, 3)])
