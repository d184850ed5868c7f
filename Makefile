# kmixup developer tasks. `make test` and `make demo` set everything up themselves.
#
# The virtual environment sees the system site-packages, so a torch that is already
# installed is reused and never replaced. If there is none, the pinned CPU build is
# installed (TORCH_SPEC); an unpinned `pip install torch` would pull several GB of CUDA
# packages. Every later pip call runs under a constraints file that pins torch to the
# installed version, and the package itself is installed with --no-build-isolation.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
DEPS       := numpy scipy mpmath pytest hypothesis ruff matplotlib scikit-learn tqdm ninja torchmetrics lightning

PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
STAMP       := $(VENV)/.kmixup-installed
CONSTRAINTS := $(VENV)/constraints.txt

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

.PHONY: venv test lint fuzz demo clean test-cuda-torch test-no-compiler test-install ci print-deps

venv: $(STAMP)

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv --system-site-packages $(VENV)

CSRC := $(wildcard csrc/*.h csrc/*.cpp csrc/cpu/*.h csrc/cpu/*.cpp csrc/cuda/*)

$(STAMP): $(VENV)/pyvenv.cfg setup.py pyproject.toml Makefile $(CSRC)
	@if $(PY) -c 'import torch' >/dev/null 2>&1; then \
		echo "Using the installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
		echo "No torch found: installing $(TORCH_SPEC)"; \
		$(PIP) install --only-binary=torch '$(TORCH_SPEC)'; \
	fi
	$(PY) -c 'import torch; print("torch==" + torch.__version__)' > $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) 'setuptools>=77' wheel $(DEPS)
	MAX_JOBS=$${MAX_JOBS:-2} $(PIP) install -c $(CONSTRAINTS) --no-build-isolation --no-deps -e .
	@touch $@

# KMIXUP_EXPECT_COMPILED: a build that silently fell back to pure PyTorch fails the tests.
test: venv
	$(VENV)/bin/ruff check .
	KMIXUP_EXPECT_COMPILED=cpu $(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .

# The fuzz test's long mode (make test runs 500 cases per backend): FUZZ_CASES per backend.
FUZZ_CASES ?= 5000
fuzz: venv
	KMIXUP_EXPECT_COMPILED=cpu KMIXUP_FUZZ_CASES=$(FUZZ_CASES) $(PY) -m pytest -q -m fuzz tests/test_fuzz.py

# The install matrix beside `make test` (.ci/*.sh say how): a CUDA torch on a machine
# without a GPU (.venv-cuda, kmixup built with its CUDA kernels), an install with no
# compiler (.venv-nocc: refused, or the pure-PyTorch package with KMIXUP_PURE=1), and
# pip's ways to install (.venv-install). `make ci` runs all of CI.
test-cuda-torch:
	bash .ci/cuda_torch.sh

test-no-compiler: venv
	bash .ci/no_compiler.sh

test-install: venv
	bash .ci/install_paths.sh

ci:
	bash .ci/run

print-deps:
	@echo $(DEPS)

# The coefficient-vs-distance demonstration, then the quick calibration experiments.
demo: venv
	$(PY) -m kmixup.demo
	$(PY) -m kmixup.experiments --quick

clean:
	rm -rf $(VENV) .venv-cuda .venv-nocc .venv-install build dist *.egg-info kmixup/*.so demo_output \
		.pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
