"""Optional rich progress bars for long renders (the CLI turns them on; flows and tests run without)."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_state: dict = {"progress": None, "tasks": {}, "enabled": False}


def enable(flag: bool = True) -> None:
    _state["enabled"] = flag


def start(prepared) -> None:
    """Open bars for generate / write sized from the plan (no-op unless enabled)."""
    if not _state["enabled"]:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    n_gen = sum(len(b.items) for b in prepared.batches)
    secs = sum(it.spec.gen.duration_s for b in prepared.batches for it in b.items)
    bar = Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), transient=False)
    with _lock:
        _state["progress"] = bar
        _state["tasks"] = {
            "generate": bar.add_task("generate", total=n_gen, extra=f"0/{secs:.0f} audio-s", secs=0.0, all=secs),
            "write": bar.add_task("write", total=n_gen + len(prepared.mixes), extra="", secs=0.0, all=0.0),
        }
    bar.start()


def advance(name: str, n: int = 1, seconds: float = 0.0) -> None:
    bar = _state["progress"]
    if bar is None:
        return
    with _lock:
        tid = _state["tasks"][name]
        task = bar.tasks[tid]
        done = task.fields.get("secs", 0.0) + seconds
        extra = f"{done:.0f}/{task.fields['all']:.0f} audio-s" if task.fields.get("all") else ""
        bar.update(tid, advance=n, secs=done, extra=extra)


def stop() -> None:
    bar = _state["progress"]
    if bar is not None:
        bar.stop()
    _state["progress"] = None
