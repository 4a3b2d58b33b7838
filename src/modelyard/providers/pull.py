"""The progress of a pull: a model fetched by its runtime as layers, each reported with a
byte total and a completed count (Ollama's registry works so; any OCI-style registry does).

Runtimes report a layer while it arrives but may send no final line for a finished layer,
and none at all for a tiny one. So a layer counts as done when a line for another layer or a
later status arrives, progress is the byte sum over the layers seen, and it never goes
backwards (a runtime's own counter can drop when a part is retried).

Layers that never appeared are missing from these sums, so while a pull runs its total is a
floor that may still grow (``final`` is False). When the pull has ended, the provider reads the
runtime's own record of the model and ``settle`` replaces the sums with the real figures.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Layer:
    total: int = 0
    completed: int = 0


class LayerTracker:
    """Folds a pull's lines into byte totals, layer counts and the current status.

    ``floor`` and ``total_floor`` are what an earlier run of the same pull had reached: a
    runtime resumes from its partial files and reports the same layers again, so the numbers
    shown start there instead of at zero.
    """

    def __init__(self, floor: int = 0, total_floor: int = 0) -> None:
        self._layers: dict[str, _Layer] = {}
        self._current: str | None = None
        self._floor = floor
        self._total_floor = total_floor
        self.downloaded = 0
        self.status: str | None = None
        self.verifying = False
        self.final = False  # the figures are the runtime's record of the model (``settle``)
        self._settled_layers: int | None = None
        self._recount()

    @property
    def total(self) -> int | None:
        """Bytes of every layer seen so far (later layers add to it), or the settled size."""
        if self.final:
            return self._total_floor
        seen = sum(layer.total for layer in self._layers.values())
        return max(seen, self._total_floor) or None

    @property
    def total_layers(self) -> int:
        return self._settled_layers or len(self._layers)

    @property
    def current_layer(self) -> int:
        """1-based position of the layer being pulled (the last one once all are done)."""
        if self._current is None:
            return self.total_layers
        return list(self._layers).index(self._current) + 1

    def layer(self, digest: str, total: int | None, completed: int | None) -> None:
        """A line about one layer."""
        if digest != self._current:
            self._finish_current()
            self._current = digest
        layer = self._layers.setdefault(digest, _Layer())
        layer.total = max(layer.total, total or 0)
        layer.completed = max(layer.completed, min(completed or 0, layer.total))
        self._recount()

    def stage(self, *, verifying: bool = False) -> None:
        """A line about the pull as a whole (the layer before it is done)."""
        self._finish_current()
        self.verifying = self.verifying or verifying
        self._recount()

    def settle(self, size: int, layers: int | None) -> None:
        """The pull has ended and the runtime says the model is ``size`` bytes in ``layers``
        blobs (None: it cannot tell; the layers seen stand): these are the figures now."""
        self._finish_current()
        self._total_floor = self.downloaded = size
        self._settled_layers = layers
        self.final = True

    def said(self, status: str | None) -> None:
        """The runtime's latest status text."""
        self.status = status or self.status

    def _finish_current(self) -> None:
        if self._current is not None:
            layer = self._layers[self._current]
            layer.completed = layer.total
            self._current = None

    def _recount(self) -> None:
        summed = sum(layer.completed for layer in self._layers.values())
        self.downloaded = max(self.downloaded, summed, self._floor)
