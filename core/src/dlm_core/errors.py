"""One exception type for user mistakes, and the wrapper every CLI uses to print it as one line."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable


class DlmError(Exception):
    """A user mistake (bad path, bad config value, missing data): printed as one line, exit code 2."""


class NonFiniteLossError(DlmError):
    """Training produced NaN/Inf."""


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int | None]:
    """Wrap a console-script `main`: DlmError -> `error: <message>` on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except DlmError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper


def check_finite(loss: float, step: int, lr: float | None = None) -> None:
    """Stop training with a useful message when the loss is NaN or Inf."""

    if not math.isfinite(float(loss)):
        lr_text = f" lr={lr:g}" if lr is not None else ""
        raise NonFiniteLossError(
            f"loss became {float(loss)} at step {step}{lr_text}; "
            "hint: lower the learning rate, enable gradient clipping, or check the inputs for NaN"
        )
