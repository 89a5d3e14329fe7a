"""Optional rich progress bars for long renders (the CLI turns them on in a terminal; flows and tests run without)."""

from __future__ import annotations

import threading


class RenderProgress:
    """Bars ``generate`` (items and audio-seconds) and ``write`` (committed or failed assets) of one render.

    Disabled, every method is a no-op. Thread-safe: tasks finish on several threads.
    """

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._bar = None
        self._tasks: dict[str, int] = {}

    def start(self, prepared) -> None:
        """Open the bars, sized from the plan (a ``render.Prepared``)."""
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        conts = [it for it in prepared.plan.pending if it.spec.gen.continue_from]  # batched after their bases
        n_gen = sum(len(b.items) for b in prepared.batches) + len(conts)
        secs = sum(it.spec.gen.duration_s for b in prepared.batches for it in b.items)
        secs += sum(it.spec.gen.duration_s for it in conts)
        bar = Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), transient=False)
        with self._lock:
            self._bar = bar
            self._tasks = {
                "generate": bar.add_task("generate", total=n_gen, extra=f"0/{secs:.0f} audio-s", secs=0.0, all=secs),
                "write": bar.add_task("write", total=n_gen + len(prepared.mixes), extra="", secs=0.0, all=0.0),
            }
        bar.start()

    def advance(self, name: str, n: int = 1, seconds: float = 0.0) -> None:
        """Advance bar ``name`` by ``n`` items and ``seconds`` of generated audio."""
        with self._lock:
            if self._bar is None:
                return
            tid = self._tasks[name]
            task = self._bar.tasks[tid]
            done = task.fields.get("secs", 0.0) + seconds
            extra = f"{done:.0f}/{task.fields['all']:.0f} audio-s" if task.fields.get("all") else ""
            self._bar.update(tid, advance=n, secs=done, extra=extra)

    def stop(self) -> None:
        with self._lock:
            bar, self._bar = self._bar, None
        if bar is not None:
            bar.stop()
