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
# containers) stops Python from caching them, so every process (the CLI, the DSP worker, Dask workers) would
# re-compile scipy/torch/prefect from source on import
.venv/.synced: pyproject.toml uv.lock Makefile | uv
	$(UV) sync --locked --compile-bytecode
	@touch $@

setup: .venv/.synced

$(TINY)/melody/state_dict.bin: | setup
	.venv/bin/assetgen models make-tiny $(TINY)

tiny: $(TINY)/melody/state_dict.bin

# The main job on the embedded defaults: the demo manifest on the tiny placeholder checkpoints (no hub here).
# --fail-on error: placeholder takes that fail a QC gate are listed and shown in the report, not a failed demo
demo: setup tiny
	.venv/bin/assetgen render manifests/demo.csv --out outputs --model-dir $(TINY) --fail-on error
	.venv/bin/assetgen report --out outputs

test: setup
	.venv/bin/python -m pytest -q

# Everything but the end-to-end renders, plus the store's crash-point scenarios (SIGKILL at each named point of
# the commit path, resume, compare with a clean run): the flow's decisions, the stages, the store and its
# crash-safety units, without end-to-end Prefect renders.
test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"
	.venv/bin/python -m pytest -q tests/test_crash.py -k crash_points_then_resume

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

clean:
	rm -rf outputs .pytest_cache
