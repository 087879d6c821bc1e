# The repository's interface. `make run` and `make test` do all set-up themselves on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NOTEBOOK := Lastname_Firstname_Asgn3.ipynb
PROFILE ?= cpu
# A local folder holding <Name>/raw/*.gz; by default the shared mirror beside the checkout, if there is one.
ASGN3_DATA_MIRROR ?= $(firstword $(wildcard $(abspath ../shared/data)))
export ASGN3_DATA_MIRROR
SYSTEM_PACKAGES := chromium libjs-mathjax poppler-utils texlive-latex-base texlive-latex-recommended latexmk

.PHONY: help setup sysdeps data run seeds test bench bench-speed gpu-check readme figures written pdfs screenshot lint constraints clean

help:
	@echo "make run      set up, prepare data, execute the notebook (PROFILE=$(PROFILE) SEED=$(SEED): in place; others: runs/)"
	@echo "make seeds    the cpu run with seeds 1 and 2 (artifacts/seeds/), for the spread between trainings"
	@echo "make test     set up, prepare data, run the test suite"
	@echo "make bench    score our samples and the anchors' with the same metric (artifacts/bench_q*.json)"
	@echo "make bench-speed  throughput of every stage, baseline against adopted settings (artifacts/bench_speed.json)"
	@echo "make gpu-check    on a CUDA machine: check the gpu profile and measure its Run-all time (artifacts/gpu_check.json)"
	@echo "make readme   regenerate README.md's numbers and the sample figure from artifacts/"
	@echo "make figures  docs/samples.png from artifacts/q1_samples.npy and q2_samples.npy"
	@echo "make written  rebuild the written answers' PDFs (written/q1.pdf ... q4.pdf)"
	@echo "make pdfs LAST=Doe FIRST=Jane   the submission package in submission/"
	@echo "make screenshot   the notebook's first screens in JupyterLab (docs/screenshots/), and its folded cells checked"
	@echo "make lint     ruff on the notebook, tools and tests"
	@echo "make constraints  re-resolve tools/pins/constraints.txt from tools/pins/constraints.in (UPGRADE=1: newest releases)"

$(VENV)/.installed: requirements.txt tools/pins/requirements-dev.txt tools/pins/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r tools/pins/requirements-dev.txt -c tools/pins/constraints.txt
	touch $@

setup: $(VENV)/.installed

# Debian packages for the PDF export and LaTeX (installed only when one is missing; needs root).
sysdeps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
	    || { echo "error: could not apt-get install $$missing (root needed); the PDF export and LaTeX need them" >&2; exit 1; }; \
	fi

data: setup
	$(PY) tools/prepare_data.py

# Only the cpu profile with seed 0 executes the notebook in place (the committed run); any other profile or seed
# writes its executed copy to runs/<profile>/seed<N>/, and the notebook puts its artifacts there too
# (artifacts/seeds/seed<N>/ for the cpu profile with another seed, so that `make bench` scores them).
SEED ?= $(or $(ASGN3_SEED),0)
EXECUTE = ASGN3_PROFILE=$(PROFILE) ASGN3_SEED=$(SEED) ASGN3_PROGRESS=0 $(PY) -m jupyter nbconvert --to notebook \
	  --execute --ExecutePreprocessor.timeout=-1 --ExecutePreprocessor.kernel_name=python3 $(NOTEBOOK)

run: setup data
ifeq ($(PROFILE)-$(SEED),cpu-0)
	$(EXECUTE) --inplace
else
	mkdir -p runs/$(PROFILE)/seed$(SEED)
	$(EXECUTE) --output-dir runs/$(PROFILE)/seed$(SEED)
endif

# The spread between trainings: the cpu pipeline from scratch with seeds 1 and 2 (one after the other; about as long
# as `make run` each). Their metrics and samples go to artifacts/seeds/seed<N>/, which the committed run's
# discussions, `make bench` and `make readme` read.
SEEDS ?= 1 2
seeds: setup data
	for seed in $(SEEDS); do $(MAKE) --no-print-directory run PROFILE=cpu SEED=$$seed || exit 1; done

test: setup data sysdeps
	$(PY) -m pytest -q

# The public recipes' samples that `make bench` scores beside ours: the anchors folder beside the CI checkout.
ANCHORS ?= $(abspath ../shared/anchors)

bench: setup data
	$(PY) tools/bench.py --anchors $(ANCHORS)

bench-speed: setup
	$(PY) tools/bench_speed.py

gpu-check: setup
	$(PY) tools/gpu_check.py

readme: setup figures
	$(PY) tools/results_table.py

figures: setup
	$(PY) tools/sample_figure.py

written: setup sysdeps
	$(PY) written/figures.py
	cd written && latexmk -pdf -interaction=nonstopmode -halt-on-error q1.tex q2.tex q3.tex q4.tex

pdfs: setup sysdeps
	$(PY) tools/export_submission.py --notebook $(NOTEBOOK) --written written --out submission --last "$(LAST)" --first "$(FIRST)"

# The notebook as a user opens it: JupyterLab in headless Chromium (needs pip jupyterlab and chromium).
screenshot: setup sysdeps
	$(PY) tools/screenshot_notebook.py --notebook $(NOTEBOOK) --out docs/screenshots

lint: setup
	$(PY) -m ruff check $(NOTEBOOK) tools tests written/figures.py

# pip-tools keeps the current pins that still satisfy the inputs; UPGRADE=1 takes the newest releases instead.
constraints: setup
	CUSTOM_COMPILE_COMMAND="make constraints" $(PY) -m piptools compile --quiet --strip-extras --allow-unsafe \
	  --no-emit-find-links --no-emit-index-url $(if $(UPGRADE),--upgrade) \
	  --output-file tools/pins/constraints.txt tools/pins/constraints.in

clean:
	rm -rf submission .pytest_cache
