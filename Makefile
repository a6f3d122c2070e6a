# make book  - set up .venv, build the HTML book into _build/html (the Chinese edition into _build/html/zh)
# make test  - set up .venv, run unit tests, the notebooks (nbval), the book build and a browser check
# make lab   - open the chapters in JupyterLab (widgets recompute live); as root (containers)
#              it adds --allow-root --no-browser; LAB_IP=0.0.0.0 listens on every address
# make student - the classroom (student) edition, made by nbgrader, in _classroom/release/
# make classroom - the student edition run to the end + issue 17's students graded in every chapter
# make grade SUBMITTED=DIR - autograde nbgrader's submitted folder DIR, write DIR/grades.csv
#              (JOBS=N grades N notebooks at once: at most the CPUs, ~1.2 GiB each)
# make test-oldest-torch - the unit tests on the oldest supported torch, in a throw-away venv
# make test-install - the chapters' first cell installs minigpt from git into a fresh venv, offline
# make rerun-check - every chapter's cells can run again once the chapter has run to the end

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# On machines without an NVIDIA GPU, install this CPU build of torch first: a plain `torch`
# from PyPI is the multi-GB CUDA build on Linux. On Linux, PyTorch's CPU index is searched
# beside PyPI, where torch==2.13.0+cpu outranks PyPI's CUDA torch==2.13.0 (a local version
# sorts after its public one); offline, pip warns about the index and takes a local wheel.
# torch alone comes from that index, its dependencies then from PyPI (asking an unreachable
# index costs pip ~8 s of retries per package).
# Override, e.g. TORCH_CPU="torch", TORCH_CPU_INDEX= (PyPI alone), or TORCH_INDEX=URL (that
# index alone).
TORCH_CPU       ?= torch==2.13.0
TORCH_CPU_INDEX ?= $(if $(filter Linux,$(shell uname -s)),https://download.pytorch.org/whl/cpu)
TORCH_INDEX     ?=
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install book test unit notebooks html browser chromium lab bench clean student classroom grade zh-notebooks \
        test-oldest-torch test-install rerun-check

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then \
	    echo "installing torch (CUDA build)"; $(PIP) install "torch>=2.5"; \
	  else \
	    echo "no NVIDIA GPU: installing $(TORCH_CPU)"; \
	    $(if $(TORCH_INDEX),$(PIP) install "$(TORCH_CPU)" --index-url $(TORCH_INDEX),$(if $(TORCH_CPU_INDEX),$(PIP) install --no-deps "$(TORCH_CPU)" --extra-index-url $(TORCH_CPU_INDEX) && )$(PIP) install "$(TORCH_CPU)"); \
	  fi; \
	fi
	$(PIP) install -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
	@echo "the package itself, with the extras the tests use: nbgrader (classroom), transformers (gpt2), tokenizers and regex (bpe), peft (lora-test)"
	$(PIP) install -e ".[classroom,gpt2,bpe,lora-test]" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import minigpt, jupyter_book, nbval, xdist, nbgrader, transformers, tokenizers, regex, peft, torch; print('minigpt', minigpt.__version__, '| torch', torch.__version__)"
	touch $(STAMP)

# The book renders the outputs stored in the notebooks (nbval checks that they are real).
# The Chinese edition (zh/, issue 21) is a second book, copied to _build/html/zh/ so that the two
# editions link to each other's pages by relative paths (minigpt/web/page/language_switch.js).
html: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(BIN)/python tools/zh_edition.py check
	$(BIN)/jupyter-book build zh -W -n --keep-going
	rm -rf _build/html/zh && cp -r zh/_build/html _build/html/zh
	@echo "open _build/html/index.html (中文版: _build/html/zh/index.html)"

# The Chinese notebooks after the English ones or the translations changed: write them
# (tools/zh_edition.py build) and run them, so their stored outputs (the checks answer in
# Chinese) are their own. `python tools/zh_edition.py stale` lists what needs translating.
zh-notebooks: $(STAMP)
	$(BIN)/python tools/zh_edition.py build
	cd zh/notebooks && for nb in [0-9][0-9]_*.ipynb; do \
	  ../../$(BIN)/jupyter nbconvert --to notebook --execute --inplace "$$nb" || exit 1; done

book: html

# tests/test_web.py and tests/test_book_html.py drive headless Chromium
chromium:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium for the browser checks"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install it (apt-get install chromium) for the browser checks"; fi; }

# The unit tests in UNIT_JOBS processes (pytest-xdist), a test file per process at a time
# (--dist loadfile): a module's fixtures, like chapter 3's graded course in tests/test_grading.py
# (~3 min), are built once, not once per process. Most tests are one thread of Python (conftest
# sets torch to one thread), so two processes on 2 cores took 706 s against 1,369 s in one
# (bench/results/cpu_2core_unit_jobs.log). At most 4: each process may start kernels of ~1 GiB.
UNIT_JOBS ?= $(shell n=$$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
PYTEST_UNIT = -m pytest -q -n $(UNIT_JOBS) --dist loadfile tests --ignore=tests/test_book_html.py

unit: $(STAMP) chromium
	$(BIN)/python $(PYTEST_UNIT)

# both editions side by side, one torch thread each (tools/nbval_editions.sh says why)
notebooks: $(STAMP)
	tools/nbval_editions.sh $(BIN)/python

browser: html chromium
	$(BIN)/python -m pytest -q tests/test_book_html.py

# The classroom edition (issues 11, 17): nbgrader's generate_assignment replaces every solution
# with `raise NotImplementedError()` and strips the hidden tests and the answers; the student
# edition must run to the end with every exercise "not implemented yet", and `play` grades the
# students of grading/students.py (answer key, blank, env switch, monkeypatch, package calls
# direct and aliased, lookup table, copied helper, one bug, frame reader, object patch, worker
# thread, quiet display, no work) in every chapter: each must get its fair score.
# ONLY=my_softmax,... WEIGHTS=my_softmax=2,... shape the assignments (the rest is practice).
ONLY    ?=
WEIGHTS ?=
SHAPE   := $(if $(ONLY),--only $(ONLY)) $(if $(WEIGHTS),--weights $(WEIGHTS))
# JOBS=N: make grade and make classroom grade N notebooks at once (tools/classroom.py --jobs)
JOBS    ?= 1
student: $(STAMP)
	$(BIN)/python tools/classroom.py student $(SHAPE)

# in a course folder of its own: its made-up students never reach the teacher's _classroom/
classroom: $(STAMP)
	$(BIN)/python tools/classroom.py --course _classroom_check student --run
	$(BIN)/python tools/classroom.py play --jobs $(JOBS)

# make grade SUBMITTED=DIR: nbgrader autograde of every DIR/<student>/<assignment>/<assignment>.ipynb
# (nbgrader's submitted layout), with the hidden tests; writes DIR/grades.csv
# (student, assignment, score, max_score, note) and the feedback into _classroom/autograded/.
# ROSTER=FILE (one student id per line, or nbgrader's student CSV): a row for everyone on it.
grade: $(STAMP)
	@test -n "$(SUBMITTED)" || { echo "usage: make grade SUBMITTED=DIR (DIR/<student>/<assignment>/<assignment>.ipynb)"; exit 2; }
	$(BIN)/python tools/classroom.py grade "$(SUBMITTED)" $(SHAPE) $(if $(ROSTER),--roster "$(ROSTER)") --jobs $(JOBS)

test: unit notebooks browser

# JupyterLab prints the URL with its token when it starts. Jupyter refuses to run as root
# without --allow-root, and a container has no browser to open. LAB_IP=0.0.0.0 makes it listen
# on every address (what `docker run -p 8888:8888` can publish); LAB_PORT picks the port.
# LAB_DIR=zh/notebooks opens the Chinese edition's chapters.
LAB_IP   ?=
LAB_PORT ?=
LAB_DIR  ?= notebooks
lab: $(STAMP)
	$(BIN)/jupyter lab $(LAB_DIR) $(if $(LAB_IP),--ip=$(LAB_IP)) $(if $(LAB_PORT),--port=$(LAB_PORT)) \
	  $(if $(filter 0,$(shell id -u)),--allow-root --no-browser)

bench: $(STAMP)
	$(BIN)/python -m bench

# Every chapter run once with its namespace fingerprinted between cells: a cell that reads a name
# a later cell changes fails when the reader runs it again (tools/rerun_check.py; ~6 min on 2 cores).
rerun-check: $(STAMP)
	$(BIN)/python tools/rerun_check.py notebooks/[0-9][0-9]_*.ipynb

# The chapters' install path, offline: a fresh venv that already has a torch, the first cell
# installing minigpt from this repository's committed HEAD, torch untouched, chapter 1 run.
test-install: $(STAMP)
	$(BIN)/python tools/check_install.py

# The oldest torch that pyproject.toml allows, with the unit tests, in a throw-away venv. Not
# part of `make test`: PyPI's Linux wheel of it is the CUDA build (torch 2.5.1: a 906 MB wheel
# plus the NVIDIA libraries it needs to import), which runs on a CPU too.
# The extras go in too (as `make install` puts them in), with torch held at the oldest: pip then
# picks an accelerate (for peft) that still supports it, and transformers 5 wants torch >= 2.6.
TORCH_OLDEST ?= 2.5.1
OLDEST_PINS  ?= "transformers<5"
OLDEST_VENV  ?= $(or $(TMPDIR),/tmp)/minigpt-oldest-torch
test-oldest-torch:
	rm -rf $(OLDEST_VENV) && $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip --disable-pip-version-check -q install "torch==$(TORCH_OLDEST)"
	$(OLDEST_VENV)/bin/python -m pip --disable-pip-version-check -q install -r requirements.txt
	$(OLDEST_VENV)/bin/python -m pip --disable-pip-version-check -q install -e ".[classroom,gpt2,bpe,lora-test]" \
	  "torch==$(TORCH_OLDEST)" $(OLDEST_PINS)
	$(OLDEST_VENV)/bin/python -c "import torch; v = torch.__version__.split('+')[0]; \
	  assert v == '$(TORCH_OLDEST)', f'torch {v} instead of $(TORCH_OLDEST)'; print('torch', v)"
	$(OLDEST_VENV)/bin/python $(PYTEST_UNIT)

clean:
	rm -rf _build zh/_build _classroom _classroom_check
