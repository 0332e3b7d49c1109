# dmf2mel: `make book`, `make test`, `make lab` on a fresh Linux machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test book lab student bench bench-busy bench-quality data clean

install: $(STAMP)

# torch is installed first and alone, from TORCH_INDEX when given: on a plain Linux laptop PyPI's torch wheel
# pulls gigabytes of CUDA libraries, PyTorch's CPU index (make install TORCH_INDEX=https://download.pytorch.org/whl/cpu)
# does not.
TORCH_INDEX ?=
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$$(grep -E '^torch==' requirements.txt)"
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# style first (seconds): lint and formatting as configured in pyproject.toml; then the tests
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

data: $(STAMP)
	$(PY) -m dmf2mel simulate --preset teaching --seed 0 --out data/teaching

# scripts/build_book.py vendors the book's scripts from npm (no CDN at read time), then executes every chapter;
# warnings and cell errors fail the build. The chapters generate the built-in corpus and train their runs once
# per machine.
book: $(STAMP)
	$(PY) scripts/build_book.py

# A class opens the chapters without JupyterLab's "official Jupyter news?" prompt and without a check for newer
# JupyterLab versions: neither can reach the network offline (scripts/lab.py; the JupyterLab test starts it too).
lab: $(STAMP)
	$(PY) scripts/lab.py notebooks

# The chapters without the exercises' solutions, for a class: student/ (notebooks) and student/_build/html (the book,
# with the outputs of the last book build, which runs first when it is missing or stale); the instructors' key,
# every solution in one file: instructors/solutions.md. Both gitignored.
student: $(STAMP)
	$(PY) scripts/student_edition.py student --key instructors/solutions.md --html

bench: $(STAMP)
	$(PY) benchmarks/scan.py
	$(PY) benchmarks/train_speed.py --threads 1
	$(PY) benchmarks/speedup.py

# One quick-profile epoch quietly, then beside two busy processes (about 5 min on 2 cores).
bench-busy: $(STAMP)
	$(PY) benchmarks/busy.py

bench-quality: $(STAMP)
	$(PY) benchmarks/quality.py

clean:
	rm -rf _build .pytest_cache student instructors
