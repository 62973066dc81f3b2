"""The model side of data-parallel learning (n2q.train.distributed) and the GPU fast path.

- ``wrap(net)``: the module the learner calls: DDP over the network when several processes
  learn (``-sync-bn``: BatchNorm cells normalize with the global batch statistics), compiled
  by torch.compile with ``-compile``; the network itself otherwise. ``ctx.net`` stays the
  plain network (state dicts, weights folders and evaluation see the usual names).
- ``step_context`` / ``after_step`` / ``consistent``: IterationSize accumulation without
  all-reduce, and the state that forward passes change outside autograd kept equal on all
  ranks (quantizers, BatchNorm running statistics).
- ``to_device``: one non-blocking copy of a (pinned) batch, channels-last on CUDA conv nets.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from n2q.quant.protocol import quantizers
from n2q.train.distributed import current

_STATE = current()
# ------------------------------------------------------------------------------------------------
# the model: DDP, synchronized BatchNorm, IterationSize accumulation
# ------------------------------------------------------------------------------------------------
def wrap(net: torch.nn.Module) -> torch.nn.Module:
    """The module the learner calls (see the module doc); call once per learning phase.

    DDP broadcasts rank 0's parameters and buffers once here (same start on every rank, also
    after ``-l``); buffers are not re-broadcast at each forward: ``after_step`` and
    ``consistent`` reconcile them."""
    model = net
    if _channels_last_pays(net):
        net.to(memory_format=torch.channels_last)
        _STATE.channels_last = True
    if _STATE.active:
        from torch.nn.parallel import DistributedDataParallel

        if _STATE.sync_bn:
            use_sync_batchnorm(net)
        cuda = _STATE.device is not None and _STATE.device.type == "cuda"
        ids = [_STATE.device] if cuda else None
        # buffers: rank 0's once at construction, never at each forward; a quantizer that
        # replaces its cell's weight (SLB) leaves parameters without gradient: DDP must look
        unused = any(getattr(q, "replaces_weight", False) for _, q in quantizers(net))
        model = (DistributedDataParallel(net, device_ids=ids, forward_sync_buffers=False,
                                         find_unused_parameters=unused)
                 if "forward_sync_buffers" in _DDP_ARGS else
                 DistributedDataParallel(net, device_ids=ids, broadcast_buffers=False,
                                         find_unused_parameters=unused))
    if _STATE.compile:
        model = torch.compile(model)
    return model


_DDP_ARGS = frozenset(inspect.signature(
    torch.nn.parallel.DistributedDataParallel.__init__).parameters)


def _channels_last_pays(net: torch.nn.Module) -> bool:
    """Channels-last pays on CUDA (cuDNN's NHWC convolutions, tensor cores) for conv nets; on
    the CPU it mostly adds layout conversions."""
    param = next(net.parameters(), None)
    return (param is not None and param.device.type == "cuda"
            and any(getattr(c, "type", "") == "Conv" for c in net.cells.values()))


def to_device(x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One non-blocking copy of a batch [B, C, H, W] (the provider pins it when CUDA is
    there), in the network's memory format."""
    x = x.to(device, dtype, non_blocking=True)
    if _STATE.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def after_step(net: Any, first: bool) -> None:
    """After each optimizer step: quantizer state equal on all ranks (parameters too after the
    first step, whose forward may have initialized them from this rank's batch)."""
    sync_quantizers(net, parameters=first)


def accumulating(optimizer: Any) -> bool:
    """Whether the next ``optimizer.step()`` updates no group (IterationSize accumulation):
    its backward then needs no all-reduce (DDP reduces the accumulated sum once, later)."""
    return all(g["passes"] + 1 < spec.schedule.iteration_size
               for g, spec in zip(optimizer.param_groups, optimizer.specs, strict=True))


def step_context(model: torch.nn.Module, optimizer: Any) -> contextlib.AbstractContextManager:
    """Around forward + backward of one batch: DDP's no_sync on accumulation-only batches."""
    if _STATE.active and hasattr(model, "no_sync") and accumulating(optimizer):
        return model.no_sync()
    return contextlib.nullcontext()


class _SyncBatchNorm(torch.autograd.Function):
    """Batch normalization over the batches of all ranks (training). x [B, C, H, W].

    Forward: per channel, sum and sum of squares over (B, H, W) all-reduced with the count,
    mean and biased variance of the global batch; the running variance gets the unbiased one
    (as F.batch_norm). Backward: the two reductions of the gradient (sum dy, sum dy*xhat)
    all-reduced, then the usual formula dx = (dy - mean(dy) - xhat*mean(dy*xhat)) * w/std."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                running_mean: torch.Tensor, running_var: torch.Tensor, eps: float,
                momentum: float) -> torch.Tensor:
        dims = [d for d in range(x.dim()) if d != 1]
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64, device=x.device)
        stats = torch.cat([x.sum(dims).double(), (x.double() ** 2).sum(dims), count])
        dist.all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean ** 2).clamp_min(0)  # biased, [C]
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            unbiased = var * n / (n - 1).clamp_min(1)
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        shape = [1, c] + [1] * (x.dim() - 2)
        inv_std = torch.rsqrt(var + eps).to(x.dtype).view(shape)
        xhat = (x - mean.to(x.dtype).view(shape)) * inv_std
        ctx.save_for_backward(xhat, inv_std, weight)
        ctx.count, ctx.dims = n, dims
        return xhat * weight.view(shape) + bias.view(shape)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        xhat, inv_std, weight = ctx.saved_tensors
        c = dy.shape[1]
        shape = [1, c] + [1] * (dy.dim() - 2)
        local = torch.cat([dy.sum(ctx.dims), (dy * xhat).sum(ctx.dims)]).double()
        grad_bias, grad_weight = local[:c].to(dy.dtype), local[c:].to(dy.dtype)  # this rank's
        dist.all_reduce(local)
        mean_dy = (local[:c] / ctx.count).to(dy.dtype).view(shape)
        mean_dy_xhat = (local[c:] / ctx.count).to(dy.dtype).view(shape)
        dx = (dy - mean_dy - xhat * mean_dy_xhat) * inv_std * weight.view(shape)
        # weight / bias gradients stay local: DDP averages them like any other parameter
        return dx, grad_weight, grad_bias, None, None, None, None


def use_sync_batchnorm(net: torch.nn.Module) -> list[str]:
    """-sync-bn: every BatchNorm cell normalizes with the global batch statistics while
    learning (inference unchanged). Returns the cells switched."""
    switched = []
    for name, cell in net.cells.items():
        if getattr(cell, "type", "") != "BatchNorm" or getattr(cell, "folded", False):
            continue
        cell.op = _sync_op(cell, cell.op)
        switched.append(name)
    return switched


def _sync_op(cell: Any, plain: Callable[[torch.Tensor], torch.Tensor]
             ) -> Callable[[torch.Tensor], torch.Tensor]:
    def op(x: torch.Tensor) -> torch.Tensor:
        if not (cell.training and _STATE.active):
            return plain(x)
        # the backward returns this rank's weight / bias gradients; DDP's average of them is
        # the single-process gradient (the loss is the average of the ranks' losses)
        return _SyncBatchNorm.apply(x, cell.weight, cell.bias, cell.running_mean,
                                    cell.running_var, cell.eps, cell.momentum)
    return op


# ------------------------------------------------------------------------------------------------
# state that forward passes change outside autograd
# ------------------------------------------------------------------------------------------------
def _coalesced(tensors: list[torch.Tensor], reduce: Callable[[torch.Tensor], None]) -> None:
    """``reduce`` applied to the tensors flattened into one buffer (one collective)."""
    if not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    reduce(flat)
    offset = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t).to(t.dtype))
            offset += n


def sync_quantizers(net: Any, *, parameters: bool) -> None:
    """Make every quantizer's state the same on all ranks.

    A quantizer that has ``sync(process_group)`` reconciles itself. Otherwise: the buffers
    named in its ``SYNC_OPS`` ({buffer name: "MIN" | "MAX" | "SUM"}) are reduced with that
    operation (SimQAT's tracked ranges: min of the ranks' minima = the global batch's), the
    other floating-point buffers (and parameters, when ``parameters``: after the first step,
    whose forward may have initialized them from the rank's own batch, e.g. LSQ's step sizes)
    averaged, the remaining buffers taken from rank 0."""
    if not _STATE.active:
        return
    from n2q.quant.protocol import quantizers

    floats: list[torch.Tensor] = []
    others: list[torch.Tensor] = []
    by_op: dict[str, list[torch.Tensor]] = {}
    for _, q in quantizers(net):
        own = getattr(q, "sync", None)
        if callable(own):
            own(dist.group.WORLD)
            continue
        ops = getattr(q, "SYNC_OPS", {})
        for name, t in q.named_buffers():
            if name.rsplit(".", 1)[-1] in ops:
                by_op.setdefault(ops[name.rsplit(".", 1)[-1]], []).append(t)
            else:
                (floats if t.is_floating_point() else others).append(t)
        if parameters:
            floats += list(q.parameters())
    world = _STATE.world
    _coalesced(floats, lambda flat: (dist.all_reduce(flat), flat.div_(world)))
    _coalesced(others, lambda flat: dist.broadcast(flat, 0))
    for op, tensors in by_op.items():
        _coalesced(tensors, lambda flat, op=op: dist.all_reduce(flat, getattr(dist.ReduceOp, op)))


def reduce_batchnorm(net: Any) -> None:
    """Per-rank BatchNorm: running statistics averaged across ranks (before validating or
    saving: one model). Synchronized BatchNorm has them equal already."""
    if not _STATE.active or _STATE.sync_bn:
        return
    stats = [t for cell in net.cells.values() if getattr(cell, "type", "") == "BatchNorm"
             for t in (cell.running_mean, cell.running_var)]
    _coalesced(stats, lambda flat: (dist.all_reduce(flat), flat.div_(_STATE.world)))


def consistent(net: Any) -> None:
    """At a log point: one model on every rank before validating and saving."""
    reduce_batchnorm(net)
    sync_quantizers(net, parameters=True)


