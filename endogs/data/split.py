"""Train/test split rules and the time normalisation shared by every format."""

from __future__ import annotations

from typing import Literal, get_args

from endogs.errors import ConfigError

SplitName = Literal["every8", "all", "alternate"]
"""The train/test rules: the one definition (CLI choices and configs use this type, code reads :data:`SPLITS`)."""
SPLITS: tuple[str, ...] = get_args(SplitName)


def split_indices(n: int, rule: str) -> tuple[list[int], list[int]]:
    """(train, test) frame indices for ``n`` frames.

    - ``every8``: test = {i : (i - 1) % 8 == 0} = 1, 9, 17, ... (EndoSurf, EndoGaussian, Deform3DGS);
      train = all the others.
    - ``all``: train and test are every frame (EndoNeRF's original protocol).
    - ``alternate``: train = even, test = odd frames (Hamlyn as ForPlane/EndoGaussian).
    """
    idx = list(range(n))
    if rule == "every8":
        test = [i for i in idx if (i - 1) % 8 == 0]
    elif rule == "all":
        return idx, list(idx)
    elif rule == "alternate":
        test = [i for i in idx if i % 2 == 1]
    else:
        raise ConfigError(f"unknown split {rule!r}; choose one of {', '.join(SPLITS)}")
    test_set = set(test)
    return [i for i in idx if i not in test_set], test


def frame_times(n: int) -> list[float]:
    """t_i = i / (N - 1) in [0, 1]; a single frame has t = 0."""
    return [0.0] * n if n <= 1 else [i / (n - 1) for i in range(n)]
