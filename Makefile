# dmf2mel: `make book`, `make test`, `make lab` on a fresh Linux machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test book lab student bench bench-quality data clean

install: $(STAMP)

# torch is installed first and alone: its pinned CPU build lies on disk, other versions pull CUDA builds.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$$(grep -E '^torch==' requirements.txt)"
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

data: $(STAMP)
	$(PY) -m dmf2mel simulate --preset teaching --seed 0 --out data/teaching

# Vendors the book's scripts from npm (no CDN at read time), then executes every chapter; warnings and
# cell errors fail the build. The chapters generate the built-in corpus and train their runs once per machine.
book: $(STAMP)
	$(PY) scripts/vendor_js.py
	rm -f _build/.book-build-ok
	$(VENV)/bin/jupyter-book build --all -W -n --keep-going .
	touch _build/.book-build-ok

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --allow-root notebooks

# The chapters without the exercises' solutions, for a class: student/ (gitignored).
student: $(STAMP)
	$(PY) scripts/student_edition.py student

bench: $(STAMP)
	$(PY) benchmarks/scan.py
	$(PY) benchmarks/train_speed.py --threads 1

bench-quality: $(STAMP)
	$(PY) benchmarks/quality.py

clean:
	rm -rf _build .pytest_cache student
