"""Fold inference-mode BatchNorm into the convolution that feeds it.

In eval mode a BatchNorm is a per-channel affine map, ``y = γ·(x − μ)/√(σ² + ε) + β``. When
``x`` is the output of a convolution and nothing else reads that output, the map can be
multiplied into the convolution's weights and bias, and the BatchNorm disappears::

    s = γ / √(σ² + ε)        W' = W · s  (per output channel)        b' = (b − μ) · s + β

Which BatchNorms qualify is read from the model's ``torch.export`` graph (not guessed from
module names): a BatchNorm is folded when its input is the output of a ``Conv*d`` module that
is called once and whose output has no other reader. Pre-activation networks (DenseNet's
dense layers, the DenseASPP head: BN → ReLU → conv) normalise concatenations, so only their
``conv1 → norm2`` pairs fold; the others stay and are reported with what feeds them.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd


@dataclass
class FoldPlan:
    """What :func:`fold_batchnorm` does to a model.

    Attributes:
        pairs: ``(conv, batchnorm)`` module names to fold, in graph order.
        kept: BatchNorm module name → why it stays (e.g. ``"input is cat"``).
    """

    pairs: list[tuple[str, str]] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: how many BatchNorms fold and why the others stay."""
        total = len(self.pairs) + len(self.kept)
        line = f"folded {len(self.pairs)} of {total} BatchNorm layers into the preceding convolution"
        if self.kept:
            reasons = Counter(self.kept.values())
            line += "; kept " + ", ".join(f"{n} ({reason})" for reason, n in reasons.most_common())
        return line


def default_example_input(model: nn.Module) -> torch.Tensor:
    """A small ``(1, 3, s, s)`` image batch the model accepts (``s`` ≥ its output stride, on its
    device, in its dtype)."""
    stride = int(getattr(model, "output_stride", 32))
    size = 2 * max(stride, 32)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32  # a float64 model takes float64 images
    return torch.zeros(1, getattr(model, "in_channels", 3), size, size, device=device, dtype=dtype)


def plan_batchnorm_folding(model: nn.Module, example_input: torch.Tensor | None = None) -> FoldPlan:
    """Find the conv → BatchNorm pairs of ``model`` (eval mode) that can be folded.

    The model is traced once with ``torch.export`` on ``example_input`` (default: a small
    image batch, see :func:`default_example_input`); nothing is computed.
    """
    _check_eval(model)
    x = default_example_input(model) if example_input is None else example_input
    with torch.no_grad():
        graph = torch.export.export(model, (x,)).graph

    modules = dict(model.named_modules())
    conv_ops: dict[str, list[torch.fx.Node]] = {}
    bn_ops: dict[str, list[torch.fx.Node]] = {}
    owner: dict[torch.fx.Node, str] = {}
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack") if node.op == "call_function" else None
        if not stack:
            continue
        path = next(reversed(stack.values()))[0]  # innermost module of the call
        owner[node] = path
        op = _op_name(node)
        if isinstance(modules.get(path), _ConvNd) and op.startswith("conv"):
            conv_ops.setdefault(path, []).append(node)
        elif isinstance(modules.get(path), _BatchNorm) and "batch_norm" in op:
            bn_ops.setdefault(path, []).append(node)

    plan = FoldPlan()
    for path, nodes in bn_ops.items():
        reason = _why_not_foldable(modules[path], nodes, owner, modules, conv_ops)
        if reason:
            plan.kept[path] = reason
        else:
            plan.pairs.append((owner[nodes[0].args[0]], path))
    for path, module in modules.items():
        if isinstance(module, _BatchNorm) and path not in bn_ops:
            plan.kept[path] = "not called by forward"  # e.g. an auxiliary head used in training only
    return plan


def fold_batchnorm(
    model: nn.Module,
    example_input: torch.Tensor | None = None,
    *,
    inplace: bool = False,
    plan: FoldPlan | None = None,
) -> nn.Module:
    """Return ``model`` (eval mode) with every foldable BatchNorm folded into its convolution.

    Folded BatchNorms become ``nn.Identity``; their convolutions gain a bias if they had none.
    The result computes the same function as ``model`` in eval mode (up to float rounding) and
    must not be trained (the BatchNorm statistics are gone). ``inplace=False`` (default) folds a
    deep copy. Raises ``ValueError`` if the model or one of its BatchNorms is in training mode.

    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
    >>> folded = fold_batchnorm(net, torch.zeros(1, 3, 8, 8))
    >>> [type(m).__name__ for m in folded]
    ['Conv2d', 'Identity', 'ReLU']
    """
    _check_eval(model)
    plan = plan if plan is not None else plan_batchnorm_folding(model, example_input)
    target = model if inplace else copy.deepcopy(model)
    for conv_name, bn_name in plan.pairs:
        conv, bn = target.get_submodule(conv_name), target.get_submodule(bn_name)
        _fold_into(conv, bn)
        parent_name, _, child = bn_name.rpartition(".")
        setattr(target.get_submodule(parent_name), child, nn.Identity())
    return target


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


# -- helpers ------------------------------------------------------------------------------
def _check_eval(model: nn.Module) -> None:
    training = [name or "<model>" for name, m in model.named_modules() if isinstance(m, _BatchNorm) and m.training]
    if model.training or training:
        where = f" (BatchNorm in training mode: {training[:3]})" if training else ""
        raise ValueError(
            "fold_batchnorm needs a model in eval mode: in training mode BatchNorm normalises with "
            f"batch statistics, which no convolution can absorb{where}. Call model.eval() first."
        )


def _why_not_foldable(
    bn: _BatchNorm,
    calls: list[torch.fx.Node],
    owner: dict[torch.fx.Node, str],
    modules: dict[str, nn.Module],
    conv_ops: dict[str, list[torch.fx.Node]],
) -> str | None:
    """``None`` if the BatchNorm called at ``calls`` folds into the convolution feeding it."""
    if not bn.track_running_stats or bn.running_mean is None:
        return "no running statistics"
    if len(calls) > 1:
        return "called more than once"
    source = calls[0].args[0]
    if not isinstance(source, torch.fx.Node):
        return "input is not a tensor"
    conv_name = owner.get(source)
    conv = modules.get(conv_name) if conv_name is not None else None
    if not isinstance(conv, _ConvNd) or source not in conv_ops.get(conv_name, []):
        return f"input is {_op_name(source)}"
    if conv.transposed:
        return "input is a transposed convolution"
    if len(conv_ops[conv_name]) > 1:
        return "its convolution is called more than once"
    if len(source.users) > 1:
        return "its convolution's output is also read elsewhere"
    return None


def _op_name(node: torch.fx.Node) -> str:
    """``aten.cat.default`` → ``cat``, ``aten.relu_.default`` → ``relu``; inputs → ``the model input``."""
    if node.op == "placeholder":
        return "the model input"
    name = getattr(node.target, "__name__", str(node.target))
    return name.split(".")[0].rstrip("_")


@torch.no_grad()
def _fold_into(conv: _ConvNd, bn: _BatchNorm) -> None:
    """Multiply ``bn``'s eval-mode affine map into ``conv``'s weight and bias (in float64)."""
    dtype = conv.weight.dtype
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    weight = conv.weight.double() * scale.reshape(-1, *([1] * (conv.weight.ndim - 1)))
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    bias = (bias - mean) * scale + beta
    trainable = conv.weight.requires_grad
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=trainable)
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=trainable)
