"""Per-sample gradients for DP-SGD in one backward pass, without the batch gradient.

Opacus' hooks let autograd compute every weight's batch gradient (which DP-SGD throws
away) and then compute the per-sample gradients again from unfolded activations. Here the
forward pass runs on *detached* weights (``torch.func.functional_call``), so backward
computes only activation gradients; each layer's per-sample weight gradients are then
computed from its saved input and output gradient:

- ``Conv2d``: the weight gradient of one grouped convolution with the batch as groups
  (no unfolded copy of the activations);
- ``GroupNorm``: output gradient times the normalised input, summed over space;
- ``Linear``: the outer product of output gradient and input.

Backward needs one tensor that requires a gradient at the bottom of the graph: the input
on the first call and, once that call has shown every other layer to lie downstream of the
first layer, the first layer's weight, so the input's gradient (a full-resolution
convolution backward for the detector) is never computed.

The result is left in ``param.grad_sample`` exactly as Opacus' ``GradSampleModule``
leaves it (per-sample gradients of a mean loss, scaled by the batch size), so Opacus'
``DPOptimizer`` clips, adds noise and accounts as usual (``grad_sample_mode="no_op"``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

SUPPORTED = (nn.Conv2d, nn.GroupNorm, nn.Linear)


def conv2d_grad_sample(layer: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients of a ``Conv2d`` (groups 1) from input and output grads.

    The batch becomes the groups of one grouped convolution's weight gradient (sample b's
    input channels only meet its own output gradient), so the work is the batch
    gradient's, done by the same kernels, with nothing unfolded.
    """
    n, cin = a.shape[:2]
    cout = g.shape[1]
    grad = torch.nn.grad.conv2d_weight(
        a.reshape(1, n * cin, *a.shape[2:]),
        (n * cout, cin, *layer.kernel_size),
        g.reshape(1, n * cout, *g.shape[2:]),
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=n,
    )
    return grad.view(n, cout, cin, *layer.kernel_size)


class PerSampleGradients(nn.Module):
    """Wrap a model so that a backward pass leaves ``grad_sample`` on its parameters.

    Parameters
    ----------
    module : nn.Module
        A model whose trainable parameters all belong to ``Conv2d`` (groups 1, numeric
        padding), ``GroupNorm`` or ``Linear`` layers (the detector and the classifiers).
        A ``describe(x)`` method, if the model has one, is a fixed input transform: it
        runs first, outside autograd, and the gradient starts at its output.
    loss_reduction : str
        ``"mean"`` (the loss averages over the batch; gradients are scaled by the batch
        size, as Opacus does) or ``"sum"``.

    Raises
    ------
    ValueError
        Naming a layer type it cannot handle.
    """

    def __init__(self, module: nn.Module, loss_reduction: str = "mean") -> None:
        super().__init__()
        self._module = module
        self.loss_reduction = loss_reduction
        self._layers = []
        for name, m in module.named_modules():
            own = [p for p in m.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            if not isinstance(m, SUPPORTED) or (
                isinstance(m, nn.Conv2d) and (m.groups != 1 or isinstance(m.padding, str))
            ):
                raise ValueError(
                    f"per-sample gradients: layer '{name}' ({type(m).__name__}) is not supported"
                )
            self._layers.append(m)
        self._saved: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self._called: list[nn.Module] = []
        # Name of the parameter that carries the backward pass instead of the input, once
        # a first pass has shown that every other layer lies downstream of its layer
        self._leaf: str | None = None
        self._checked = False
        self._first_fn = None
        self._downstream = True
        self._handles = [m.register_forward_hook(self._capture) for m in self._layers]

    def _capture(self, layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not torch.is_grad_enabled() or not output.requires_grad:
            return
        if layer in self._called:  # its second gradient would overwrite the first
            raise ValueError(
                f"per-sample gradients: {type(layer).__name__} layer used twice "
                "in one forward pass (shared weights) is not supported"
            )
        self._called.append(layer)
        if not self._checked:
            self._check_downstream(output)
        activation = inputs[0].detach()

        def keep(grad: torch.Tensor) -> None:
            self._saved[layer] = (activation, grad)

        output.register_hook(keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model on detached weights; the input carries the backward pass.

        From the second call on, the first layer's weight carries it instead when the
        first backward pass showed that every other layer lies downstream of that layer.
        """
        if not torch.is_grad_enabled():
            return self._module(x)
        describe = getattr(self._module, "describe", None)
        if describe is not None:  # a fixed input transform (no parameters) runs outside
            x = describe(x)
        weights = {n: p.detach() for n, p in self._module.named_parameters()}
        self._called = []
        if not self._checked:  # a pass whose backward never ran leaves nothing behind
            self._first_fn, self._downstream = None, True
        n = x.shape[0]
        if self._leaf is None:
            # the input's gradient comes last in backward
            x = x.detach().requires_grad_(True)
            x.register_hook(lambda _: self._finish(n))
        else:
            # Backward then stops at the first layer's weight: the input's gradient (a
            # full-resolution convolution, and the fixed filters below it) is not computed
            # (-7 % per DP step on the detector). Only that one small weight gets a batch
            # gradient, which is discarded.
            leaf = weights[self._leaf].requires_grad_(True)
            leaf.register_hook(lambda _: self._finish(n))
        return functional_call(self._module, weights, (x,))

    def _check_downstream(self, output: torch.Tensor) -> None:
        # first pass only: is the first layer's output an ancestor of this layer's output?
        if self._first_fn is None:
            self._first_fn = output.grad_fn
            return
        seen, stack = set(), [output.grad_fn]
        while stack:
            fn = stack.pop()
            if fn is None or fn in seen:
                continue
            if fn is self._first_fn:
                return
            seen.add(fn)
            stack.extend(f for f, _ in fn.next_functions)
        self._downstream = False

    def _choose_leaf(self) -> None:
        # graphs are fixed per model: what the first pass showed holds for the later ones
        self._checked = True
        if self._called and self._downstream:
            first = self._called[0]
            for name, m in self._module.named_modules():
                if m is first:
                    own = [k for k, p in m.named_parameters(recurse=False) if p.requires_grad]
                    self._leaf = f"{name}.{own[0]}" if name else own[0]
        self._first_fn = None

    def _finish(self, n: int) -> None:
        if not self._checked:
            self._choose_leaf()
        scale = float(n) if self.loss_reduction == "mean" else 1.0
        for layer in self._layers:
            if layer not in self._saved:
                name = type(layer).__name__
                raise RuntimeError(
                    f"per-sample gradients: no gradient reached a {name} "
                    "layer (unused in the loss?)"
                )
            a, g = self._saved.pop(layer)
            if isinstance(layer, nn.Conv2d):
                _set(layer.weight, conv2d_grad_sample(layer, a, g), scale)
                if layer.bias is not None:
                    _set(layer.bias, g.sum((2, 3)), scale)
            elif isinstance(layer, nn.GroupNorm):
                normed = F.group_norm(a, layer.num_groups, eps=layer.eps)
                dims = tuple(range(2, g.dim()))
                _set(layer.weight, (g * normed).sum(dims), scale)
                _set(layer.bias, g.sum(dims), scale)
            else:
                _set(layer.weight, torch.einsum("n...o,n...i->noi", g, a), scale)
                if layer.bias is not None:  # summed over any middle (sequence) dims
                    _set(layer.bias, g if g.dim() == 2 else g.flatten(1, -2).sum(1), scale)
        self._saved.clear()

    def remove_hooks(self) -> None:
        """Detach from the model (it trains normally again)."""
        for h in self._handles:
            h.remove()
        self._handles = []


def _set(param: nn.Parameter, grad_sample: torch.Tensor, scale: float) -> None:
    # scaled here, on the small per-sample tensors, not on the activation-sized gradients
    if param.requires_grad:
        param.grad_sample = grad_sample * scale
