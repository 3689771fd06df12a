# nasiam-bench: `make install`, then `make test`. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := pkg-config libopencv-dev libturbojpeg0-dev
FRAMEWORK ?= moco
DATASET ?= cifar10
PROFILE ?= quick
STRATEGY ?= darts
RECIPE ?= reference
SEEDS ?= 1
TEST_WORKERS ?= auto
SOURCE ?= ../shared/datasets/$(DATASET).tar.gz
DATA_ROOT ?=
DEVICE ?= auto
OVERRIDES ?=
BENCH_OPTIONS ?=

# Where a bench finds a dataset's offline archive to prepare it from (the package looks beside nothing by itself).
NASIAM_SOURCES ?= $(abspath ../shared/datasets)
export NASIAM_SOURCES

.DEFAULT_GOAL := help
.PHONY: help docs test-fast install system-deps check-installed test slurm-up test-slurm test-gpu doctor benchmark lint data wheelhouse install-offline bench plan status compare-search search-budget groundtruth tables quirk clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

system-deps: ## Debian's build dependencies of ffcv (OpenCV, libjpeg-turbo, pkg-config)
	@if pkg-config --exists opencv4 libturbojpeg 2>/dev/null; then \
		echo "system-deps: pkg-config finds opencv4 and libturbojpeg; nothing to install"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES); \
	else \
		echo "system-deps: ffcv builds against OpenCV and libjpeg-turbo, which pkg-config does not find." >&2; \
		echo "  Install them first, e.g.: sudo apt-get install $(DEBIAN_PACKAGES)" >&2; \
		exit 1; \
	fi

install: system-deps ## create .venv and install the package (editable) with its dev tools
	@command -v $(PYTHON) >/dev/null || { echo "install: $(PYTHON) not found; nasiam-bench needs Python 3.11 (PYTHON=...)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ffcv,wandb,docs]'
	$(BIN)/nasiam-bench list

PYTHON_VERSION ?= 3.12
WHEELHOUSE ?= wheelhouse
wheelhouse: ## every wheel the suite needs beyond torch for PYTHON_VERSION (FFCV with OpenCV bundled), into WHEELHOUSE
	bash scripts/wheelhouse.sh $(PYTHON_VERSION) $(WHEELHOUSE)

install-offline: ## install the suite from WHEELHOUSE into PYTHON's environment (it has torch, torchvision), no index
	@$(PYTHON) -c 'import torch, torchvision' 2>/dev/null || { echo "install-offline: $(PYTHON) has no torch and torchvision; install them first (or PYTHON=...)" >&2; exit 2; }
	@test -d $(WHEELHOUSE) || { echo "install-offline: no wheelhouse at $(WHEELHOUSE) (make wheelhouse, or WHEELHOUSE=DIR)" >&2; exit 2; }
	$(PYTHON) -m pip install --no-index --find-links $(WHEELHOUSE) 'nasiam-bench[ffcv,dev]'
	bash scripts/check-installed.sh $(PYTHON) $(CHECK_DATA)

CHECK_DATA ?= $(wildcard $(CURDIR)/.cache/test-data)
check-installed: ## the wheel installed with --no-index into a fresh environment: show, bench --plan and a smoke bench, outside the checkout
	bash scripts/install-check.sh $(VENV) $(CHECK_DATA)

test: ## all tests but the SLURM ones, in TEST_WORKERS processes (pytest-xdist); the benchmarks run once each at smoke size, unmeasured
	$(BIN)/python -m pytest tests -m "not slurm" -n $(TEST_WORKERS) --dist loadgroup --benchmark-disable --durations=25

test-fast: ## the tests that need no dataset and start no process (registries, specs, identity, stats, ...): about a minute
	$(BIN)/python -m pytest tests -m "not slow and not slurm and not cuda" -n $(TEST_WORKERS) --benchmark-disable -q

slurm-up: ## a single-node SLURM cluster on this Debian/Ubuntu machine (as root): slurm-wlm, munge, one partition
	bash scripts/slurm-up.sh

test-slurm: ## the tests marked slurm, against the cluster sinfo answers for (make slurm-up); they skip without one
	$(BIN)/python -m pytest tests -m slurm -rs --durations=5

test-gpu: ## the tests marked cuda (they skip without a GPU), on a CUDA machine
	$(BIN)/python -m pytest tests -m cuda --ignore=tests/benchmarks

doctor: ## a 1-2 minute end-to-end self-check on DEVICE (auto, cpu or cuda), after preparing CIFAR-10 once (3 min); non-zero exit on any failure
	$(BIN)/nasiam-bench doctor --device $(DEVICE)

benchmark: ## run tests/benchmarks for real and print the figures
	$(BIN)/python -m pytest tests/benchmarks --benchmark-enable --benchmark-only --benchmark-columns=min,median,mean,stddev,rounds

docs: ## the docs site (mkdocs, Material, mkdocstrings) into docs-site/, strict: a broken link or reference fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir docs-site

lint: ## ruff over the package and the tests; lint-imports holds the package's layers (pyproject.toml)
	$(BIN)/ruff check nasiam_bench tests examples
	$(BIN)/ruff format --check nasiam_bench tests examples
	$(BIN)/lint-imports

data: ## prepare DATASET (default cifar10) from SOURCE (default ../shared/datasets/DATASET.tar.gz) under DATA_ROOT
	$(BIN)/nasiam-bench data prepare $(DATASET) --source $(SOURCE) $(if $(DATA_ROOT),--root $(DATA_ROOT))

BENCH = $(BIN)/nasiam-bench bench $(FRAMEWORK) profile=$(PROFILE) recipe=$(RECIPE) strategy=$(STRATEGY) --dataset $(DATASET) --seeds $(SEEDS) $(OVERRIDES)
bench: ## search, pre-train and compare the heads of FRAMEWORK (DATASET, PROFILE, RECIPE, STRATEGY, SEEDS, OVERRIDES, BENCH_OPTIONS)
	$(BENCH) $(BENCH_OPTIONS)

plan: ## the jobs of that bench, their states and expected device-hours (runs nothing)
	$(BENCH) $(BENCH_OPTIONS) --plan

status: ## where each job of that bench ran, how long it took, and why a failed one failed
	$(BENCH) $(BENCH_OPTIONS) --status

COMPARED_STRATEGIES ?= ["darts","darts_single","beta_darts","random"]
compare-search: ## the search strategies side by side on MoCo and SimSiam (PROFILE, RECIPE, 3 seeds; resumes), then the tables
	for fw in moco simsiam; do \
		$(BIN)/nasiam-bench bench $$fw profile=$(PROFILE) recipe=$(RECIPE) 'experiment.bench_strategies=$(COMPARED_STRATEGIES)' --dataset $(DATASET) --seeds 3 $(OVERRIDES) || exit $$?; \
	done

GT_SAMPLE ?= 100
GT_SEEDS ?= 2
groundtruth: ## the ground truth of FRAMEWORK's head space: GT_SAMPLE sampled genotypes, baseline, paper and committed picks, GT_SEEDS seeds (resumes)
	$(BIN)/nasiam-bench groundtruth $(FRAMEWORK) profile=$(PROFILE) recipe=$(RECIPE) --dataset $(DATASET) --sample $(GT_SAMPLE) --seeds $(GT_SEEDS) --command-line "make groundtruth" $(OVERRIDES) $(BENCH_OPTIONS)

tables: ## regenerate results/<dataset>.md, .csv and plots from results/records, and the README's headline table
	$(BIN)/nasiam-bench tables --readme README.md

quirk: ## does the paper's MoCo BatchNorm defect explain its pooling genotypes? darts with and without it, 3 seeds
	$(BIN)/nasiam-bench searches moco_cifar10 recipe=nasiam-code 'data.crop_scale=[0.2,1.0]' search.epochs=8 --seeds 3 \
		--variant "without the quirk:" --variant "with the quirk:search.paper_bn_eps_quirk=true" \
		--report results/moco_bn_quirk.md --command-line "make quirk" \
		--title "MoCo darts searches with NASiam's code's recipe (but MoCo v2's 20-100% crops), with and without its BatchNorm quirk"

SEARCH_BUDGETS ?= 3e-4:12 3e-3:8 1e-2:8 3e-2:10 1e-2:10
search-budget: ## does FRAMEWORK's darts search decide? per ARCH_LR:EPOCHS of SEARCH_BUDGETS, 2 seeds, plain and perturbed
	for budget in $(SEARCH_BUDGETS); do \
		lr=$${budget%%:*}; epochs=$${budget##*:}; \
		$(BIN)/nasiam-bench searches $(FRAMEWORK)_$(DATASET) profile=$(PROFILE) recipe=$(RECIPE) search.arch_lr=$$lr search.epochs=$$epochs --seeds 2 \
			--variant "plain:" --variant "perturbed:search.alpha_perturbation=1e-6" \
			--report results/search_budget/$(FRAMEWORK)_$(PROFILE)_arch_lr_$${lr}_epochs_$$epochs.md \
			--command-line "make search-budget FRAMEWORK=$(FRAMEWORK) SEARCH_BUDGETS=$$budget" \
			--title "$(FRAMEWORK) darts searches ($(PROFILE) profile, $(RECIPE) recipe) at alpha lr $$lr for $$epochs epochs, plain and perturbed by 1e-6" || exit $$?; \
	done

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks
