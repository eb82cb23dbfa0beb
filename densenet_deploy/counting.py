"""Parameters and multiply-accumulates (what the paper calls FLOPs), counted by PyTorch itself."""

from __future__ import annotations


def count_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_macs(model, input_size: tuple[int, int, int], batch: int = 1) -> int:
    """MACs of one forward pass at `input_size` (C, H, W), per image, via torch.utils.flop_counter.

    The counter reports FLOPs = 2 x MACs for convolutions and matrix products; BN, ReLU, pooling and
    concatenation are not counted, which matches how the paper and torchvision count.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    # A model on the meta device (shapes only, see zoo_listing) is counted with a meta input.
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros((batch, *input_size), device=device)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    except RuntimeError as exc:  # e.g. pooling below 1x1: the input is too small for this architecture
        from .errors import DnxError

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DnxError(f"input size {'x'.join(map(str, input_size))} does not fit this model ({first[:160]})") from exc
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2 // batch)
