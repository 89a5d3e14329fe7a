"""Fixture builders shared by the report / review / export / browser tests (no tests here).

Assets are real WAVs (soundfile) indexed through the real ``assetgen.store.index.Index`` API.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from assetgen.store.index import Index


def tone(seconds: float = 2.0, sr: int = 16_000, freq: float = 440.0, channels: int = 2,
         amp: float = 0.3) -> np.ndarray:
    """A sine, float32 ``(channels, samples)``."""
    t = np.arange(int(seconds * sr)) / sr
    mono = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(mono[None, :], channels, axis=0)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def add_asset(root: Path, scene: str, asset: str, audio: np.ndarray | None = None, sr: int = 16_000,
              **row) -> dict:
    """Write the next version's WAV under ROOT/scene/asset/ and index it; returns the stored row."""
    root = Path(root)
    audio = tone(sr=sr) if audio is None else audio
    index = Index(root)
    version = index.next_version(scene, asset)
    rel = f"{scene}/{asset}/{asset}_v{version:03d}.wav"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.T, sr, subtype="PCM_24")
    base = dict(scene=scene, asset=asset, version=version, path=rel, sha256=sha256(path),
                content_key=hashlib.sha256(f"{scene}/{asset}/{version}/{row.get('seed', 0)}".encode()).hexdigest(),
                model="sfx", placeholder=0, prompt=f"{asset} in the {scene}", seed=version,
                params=json.dumps({"duration_s": audio.shape[1] / sr, "temperature": 1.0}),
                sample_rate=sr, channels=audio.shape[0], bit_depth=24, duration_s=audio.shape[1] / sr,
                lufs=-23.2, true_peak_dbtp=-3.0, loudness_target=-23.0, true_peak_target=-1.0,
                audio_status="ok", category="ambience", tags=json.dumps(["test"]), run_id="run1")
    base.update(row)
    return index.add_version(base)


def texture(seconds: float = 3.0, sr: int = 16_000, seed: int = 0, channels: int = 2) -> np.ndarray:
    """Chirps over pulsing filtered noise: looks and sounds like an asset (for screenshots), float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    noise = np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same") * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    chirp = np.sin(2 * np.pi * (800 + 1500 * (t % 0.5)) * t) * (np.sin(2 * np.pi * 2 * t) > 0.6)
    mono = (0.25 * noise + 0.2 * chirp).astype(np.float32)
    return np.repeat(mono[None, :], channels, axis=0)


@contextlib.contextmanager
def serve_in_thread(app, timeout_s: float = 30.0):
    """Run an ASGI ``app`` on a real uvicorn server on a free 127.0.0.1 port; yields the port."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "review server did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
