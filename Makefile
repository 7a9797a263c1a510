# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make run    start the dashboard on the demo database (built on first start)
#   make test   run the whole test suite (ruff + pytest)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DB ?= data/empreinte.duckdb
PORT ?= 8501

.PHONY: run test demo bench lint refdata clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 introuvable ($(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

$(DB): | $(STAMP)
	$(PY) -m analytics --db $(DB) demo

demo: $(STAMP)
	$(PY) -m analytics --db $(DB) demo

run: $(STAMP) $(DB)
	EMPREINTE_DB=$(DB) $(VENV)/bin/streamlit run dashboard.py --server.port $(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

refdata: $(STAMP)
	$(PY) scripts/build_refdata.py

clean:
	rm -rf $(VENV) $(DB) $(DB).wal
