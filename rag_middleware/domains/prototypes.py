"""Label prototypes: each value of a voted field is the mean of the vectors of the examples that carry it.

The nearest neighbours of a request vote by what the closest few questions say; a prototype says what all
the questions with a value have in common. A field that follows the topic of a request (a claim's type, a
listing's type) is told better by the nearest prototype, a field named by a few words (the channel) by the
neighbours and their cue words. Leave-one-out on the examples chooses, per field, how much the prototypes
weigh against the neighbours (``blend`` in the field's judgement, ``judgement.reliability``).

Reviewed answers join their value's prototype with their trust, so every approved answer moves the
prototypes of the next requests, not only of the near-identical ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
import numpy as np

from .paths import Path

__all__ = ["BLENDS", "Prototypes", "TEMPERATURE"]

TEMPERATURE = 0.05  # cosine to a prototype -> share: a prototype 0.05 closer holds e (2.7) times the weight
BLENDS = (0.0, 0.5)  # the prototypes' share of a field's vote, chosen per field by leave-one-out


@dataclass
class Prototypes:
    """Per voted path, per value label: the sum of the example vectors carrying it and their weight."""

    sums: dict[Path, dict[str, np.ndarray]] = field(default_factory=dict)
    weights: dict[Path, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def build(cls, labelled: dict[Path, list[str | None]], vectors: np.ndarray) -> Prototypes:
        """``labelled``: per path, each example's label (None: no single value there), in ``vectors``' order."""
        out = cls()
        for path, labels in labelled.items():
            for label, vector in zip(labels, vectors, strict=True):
                if label is not None:
                    out.add(path, label, vector, 1.0)
        return out

    def add(self, path: Path, label: str, vector: np.ndarray, weight: float) -> None:
        sums = self.sums.setdefault(path, {})
        sums[label] = sums[label] + weight * vector if label in sums else weight * np.asarray(vector, np.float64)
        self.weights.setdefault(path, {})[label] = self.weights.get(path, {}).get(label, 0.0) + weight

    def shares(self, path: Path, query: np.ndarray, *, extra: Iterable[tuple[str, np.ndarray, float]] = (),
               minus: tuple[str, np.ndarray] | None = None) -> dict[str, float]:
        """Each label's share by the cosine of ``query`` to its prototype (softmax at TEMPERATURE), with
        ``extra`` (label, vector, weight) joining and ``minus`` (label, vector) leaving (leave-one-out). At
        least two labels with a prototype, else nothing."""
        sums = dict(self.sums.get(path, {}))
        weights = dict(self.weights.get(path, {}))
        for label, vector, weight in extra:
            sums[label] = sums[label] + weight * vector if label in sums else weight * np.asarray(vector, np.float64)
            weights[label] = weights.get(label, 0.0) + weight
        if minus is not None and minus[0] in sums:
            sums[minus[0]] = sums[minus[0]] - minus[1]
            weights[minus[0]] -= 1.0
        labels = [label for label in sums if weights.get(label, 0.0) > 1e-9]
        if len(labels) < 2:
            return {}
        matrix = np.stack([sums[label] for label in labels])
        norms = np.linalg.norm(matrix, axis=1)
        norms[norms == 0] = 1.0
        cosines = (matrix / norms[:, None]) @ np.asarray(query, np.float64)
        scaled = np.exp((cosines - cosines.max()) / TEMPERATURE)
        return {label: float(s) for label, s in zip(labels, scaled / scaled.sum(), strict=True)}


def blend(knn: dict[str, float], proto: dict[str, float], share: float) -> dict[str, float]:
    """Two label shares mixed (``share`` of the prototypes'), highest first."""
    if not proto or share <= 0:
        mixed = knn
    elif not knn:
        mixed = proto
    else:
        mixed = {k: (1 - share) * knn.get(k, 0.0) + share * proto.get(k, 0.0) for k in dict.fromkeys([*knn, *proto])}
    return dict(sorted(mixed.items(), key=lambda kv: -kv[1]))
