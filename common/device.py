"""Which torch device a setting like 'auto' names, checked to exist on this machine."""
from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device name that is not a device, or names one this machine does not have; `reason`
    says which, without the name (for messages that name the flag)."""

    def __init__(self, name: object, reason: str) -> None:
        super().__init__(f"device {str(name)!r}: {reason}")
        self.reason = reason


def check_device(name: str, flag: str = "--device") -> None:
    """resolve_device for a command line: SystemExit naming `flag` when `name` is no usable device."""
    try:
        resolve_device(name)
    except DeviceError as e:
        raise SystemExit(f"{flag} {name}: {e.reason}") from None


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' -> CUDA when present, else CPU; anything else is passed to torch.device and checked:
    a name that is no device, or CUDA (MPS) where there is none, raises DeviceError naming it
    (rather than a corrupt-file or assertion error later, at the first tensor moved there)."""
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError, ValueError):
            raise DeviceError(name, "not a device name; use auto, cpu, cuda or cuda:<index>") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(name, "no CUDA device is available on this machine; use cpu or auto")
        if device.index is not None and device.index >= count:
            raise DeviceError(name, f"this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(name, "MPS is not available on this machine; use cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(name, "not supported here; use auto, cpu, cuda or cuda:<index>")
    return device
