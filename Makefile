# samkit: `make run` executes every notebook into runs/<timestamp>/, `make test` runs the test suite.
# Both create the virtual environment .venv themselves when it is missing or older than pyproject.toml.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.samkit-installed
PARAMS ?=
PYTEST_ARGS ?=

.PHONY: help venv run course notebooks test test-fast test-gpu test-colab lint slides bench train-tiny clean

help:
	@echo "make run          execute all notebooks with papermill into runs/<timestamp>/ (PARAMS='-p model vit_b')"
	@echo "make course       the full course run: notebooks built from notebooks/src, executed into runs/course-<ts>/,"
	@echo "                  their outputs stored in notebooks/*.ipynb, and slides/index.html built from the same run"
	@echo "make notebooks    rebuild notebooks/*.ipynb from notebooks/src (no outputs)"
	@echo "make test         unit, parity, notebook (nbval) and browser tests, offline on CPU"
	@echo "make test-gpu     the notebooks' full course configuration on CUDA (when a GPU is present)"
	@echo "make test-colab   the small notebooks in an environment with the versions Colab ships (slow; not in CI)"
	@echo "make lint         ruff check samkit tests benchmarks tools (settings in pyproject.toml)"
	@echo "make bench        speed benchmarks: samkit vs the official code on this machine"
	@echo "make train-tiny   re-train the embedded tiny model (configs/tiny_v1*.yaml, then tiny.yaml, tiny_phase2..5, tiny_phase6_512, tiny_min3, tiny_ctx)"
	@echo "make slides       build slides/index.html from the latest run"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (samkit)" >/dev/null
	@touch $@

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/samkit run $(PARAMS)

notebooks: $(STAMP)
	$(PY) notebooks/build_notebooks.py

# The stored outputs of the course: one full-configuration run (the one `make run` executes), stored in the
# committed notebooks and turned into the deck (README: "The stored outputs" gives its time on 2 cores).
course: $(STAMP)
	$(PY) notebooks/build_notebooks.py
	set -e; run=runs/course-$$(date +%Y%m%d-%H%M%S); \
	SAMKIT_OFFLINE=1 $(PY) -m samkit.runner --out runs --name $$(basename $$run) $(PARAMS); \
	$(PY) notebooks/build_notebooks.py --from-run $$run; \
	$(PY) -m tools.slides --run $$run; \
	echo "stored outputs: notebooks/*.ipynb; deck: slides/index.html; run: $$run"

test: $(STAMP)
	$(PY) -m ruff check samkit tests benchmarks tools
	$(PY) -m pytest -q -ra --durations=15 $(PYTEST_ARGS) tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow and not parity and not notebooks and not browser" tests

lint: $(STAMP)
	$(PY) -m ruff check samkit tests benchmarks tools

test-gpu: $(STAMP)
	$(PY) -m tools.gpu_suite

bench: $(STAMP)
	$(PY) benchmarks/bench_speed.py

train-tiny: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m samkit.cli train configs/tiny_v1.yaml
	OMP_NUM_THREADS=1 $(PY) -m samkit.cli train configs/tiny_v1_phase2.yaml
	OMP_NUM_THREADS=1 $(PY) -m samkit.cli train configs/tiny_v1_phase3.yaml
	OMP_NUM_THREADS=1 $(PY) -m samkit.cli train configs/tiny_v1_phase4.yaml
	OMP_NUM_THREADS=2 $(PY) -m samkit.cli train configs/tiny.yaml
	OMP_NUM_THREADS=2 $(PY) -m samkit.cli train configs/tiny_phase2.yaml
	OMP_NUM_THREADS=2 $(PY) -m samkit.cli train configs/tiny_phase3.yaml
	OMP_NUM_THREADS=2 $(PY) -m samkit.cli train configs/tiny_phase4.yaml
	OMP_NUM_THREADS=2 $(PY) -m samkit.cli train configs/tiny_phase5.yaml
	OMP_NUM_THREADS=2 $(PY) -m samkit.cli train configs/tiny_phase6_512.yaml
	OMP_NUM_THREADS=2 $(PY) -m samkit.cli train configs/tiny_min3.yaml
	OMP_NUM_THREADS=2 $(PY) -m samkit.cli train configs/tiny_ctx.yaml
	$(PY) -m samkit.model_card runs/tiny_ctx/model.pth --install --textures-seen camera rocket \
		--runs runs/tiny_v1 runs/tiny_v1_phase2 runs/tiny_v1_phase3 runs/tiny_v1_phase4 \
		runs/tiny runs/tiny_phase2 runs/tiny_phase3 runs/tiny_phase4 runs/tiny_phase5 runs/tiny_phase6_512 \
		runs/tiny_min3 runs/tiny_ctx

test-colab: $(STAMP)
	bash tests/colab/run_colab_env.sh

slides: $(STAMP)
	$(PY) -m tools.slides

clean:
	rm -rf $(VENV) runs .pytest_cache
