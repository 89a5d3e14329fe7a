"""Model state is explicit: a ModelCache loads each (checkpoint, device) once; importing the audiocraft backend
changes nothing in audiocraft, loading a model installs the per-request sampler."""

from __future__ import annotations

import subprocess
import sys
import threading
import types

import pytest

from assetgen.models import cache
from tests.conftest import REPO


@pytest.fixture
def fake_backend(monkeypatch):
    """``AudiocraftBackend`` replaced by a recorder (no torch): (resolved, device) per load."""
    loads: list[tuple[str, str]] = []

    class Backend:
        def __init__(self, resolved, device):
            loads.append((resolved.source, device))

    module = types.ModuleType("assetgen.models.audiocraft_backend")
    module.AudiocraftBackend = Backend
    monkeypatch.setitem(sys.modules, "assetgen.models.audiocraft_backend", module)
    # the process cache is swapped too: fakes loaded through it must not reach later tests' renders
    monkeypatch.setattr(cache, "_default", cache.ModelCache())
    return loads


def test_each_checkpoint_and_device_loads_once_per_cache(tiny_models, fake_backend):
    models = cache.ModelCache()
    music = models.get("music", tiny_models, "cpu")
    assert models.get(str(tiny_models / "music"), None, "cpu") is music  # same checkpoint by path
    sfx = models.get("sfx", tiny_models, "cpu")
    assert sfx is not music and models.load_count == 2 and len(fake_backend) == 2
    other = cache.ModelCache()
    assert other.get("music", tiny_models, "cpu") is not music and other.load_count == 1  # caches are separate
    models.clear()
    assert models.get("music", tiny_models, "cpu") is not music and models.load_count == 3


def test_concurrent_first_use_loads_once(tiny_models, fake_backend):
    models = cache.ModelCache()
    got = []
    threads = [threading.Thread(target=lambda: got.append(models.get("sfx", tiny_models, "cpu"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert models.load_count == 1 and len({id(b) for b in got}) == 1


def test_module_functions_use_the_process_cache(tiny_models, fake_backend):
    backend = cache.get_backend("sfx", tiny_models, "cpu")
    count = cache.load_count
    assert count == cache.default_cache().load_count >= 1
    assert cache.default_cache().get("sfx", tiny_models, "cpu") is backend
    assert cache.get_backend("sfx", tiny_models, "cpu") is backend and cache.load_count == count


PROBE = """
import audiocraft.utils.utils as ac_utils
original = ac_utils.multinomial
import assetgen.models.audiocraft_backend as ab
assert ac_utils.multinomial is original, "importing the backend patched audiocraft"
ab.install_row_sampler(); ab.install_row_sampler()
assert ac_utils.multinomial is ab._row_multinomial
ac_utils.multinomial = timer = lambda *a, **k: None
ab.install_row_sampler()
assert ac_utils.multinomial is timer, "someone else's sampler replaced"
print("OK")
"""


def test_sampler_is_installed_explicitly_not_at_import():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr
