# Everything a fresh machine with Python 3.11, pip and make needs: `make demo` and `make test` bootstrap themselves.
PYTHON ?= python3
UV := $(PYTHON) -m uv
TINY := models/tiny
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test test-fast setup uv tiny bench clean

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv

# --compile-bytecode: uv installs without .pyc files and PYTHONDONTWRITEBYTECODE (set here, and in many
# containers) stops Python from caching them, so every process would re-compile scipy/torch/prefect from
# source on import (measured: `import prefect, torch, audiocraft.models` 35.7 s -> 14.0 s, the DSP worker's
# start 5.5 s -> 2 s of CPU)
.venv/.synced: pyproject.toml uv.lock Makefile | uv
	$(UV) sync --locked --compile-bytecode
	@touch $@

setup: .venv/.synced

$(TINY)/music/state_dict.bin: | setup
	.venv/bin/assetgen models make-tiny $(TINY)

tiny: $(TINY)/music/state_dict.bin

# The main job on the embedded defaults: the demo manifest on the tiny placeholder checkpoints (no hub here).
demo: setup tiny
	.venv/bin/assetgen render manifests/demo.csv --out outputs --model-dir $(TINY)
	.venv/bin/assetgen report --out outputs

test: setup
	.venv/bin/python -m pytest -q

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

clean:
	rm -rf outputs .pytest_cache
