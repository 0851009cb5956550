# Set-up, demo and tests. Everything here must work on a fresh Debian 12 machine as root,
# and be quick when already done (`make setup` is idempotent).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
AUDITOR := $(BIN)/auditor
DEMO_OUT ?= out/demo
# Debian packages the auditor, its probes and the lab need on the auditing machine.
APT_PACKAGES := podman runc containernetworking-plugins debootstrap nmap tcpdump nftables \
	iproute2 iputils-ping netcat-openbsd openssh-client openssh-server python3-venv \
	python3-dev gcc libffi-dev ca-certificates wireguard-tools wireguard-go sudo \
	chromium fonts-noto-cjk ufw iptables ipset conntrack
VENV_STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
# OSCAL 1.1.3 models of compliance-trestle validate the OSCAL output in the tests. Trestle pins
# an older paramiko than the auditor's, so it lives in a venv of its own, used only by tests.
OSCAL_VENV := .venv-oscal
TRESTLE_VERSION := 3.12.4
OSCAL_STAMP := $(OSCAL_VENV)/.installed-trestle-$(TRESTLE_VERSION)
# The lab is one per machine: test runs that use it wait for each other.
LAB_LOCK := flock /tmp/auditor-lab.lock

.PHONY: help setup apt venv oscal-validator image demo test test-unit test-lab lint bench clean lab-down

help:
	@echo "make demo   - set up, bring the reference lab up, run a full audit, write the report"
	@echo "make test   - set up, then run the whole test suite (lint, unit, lab end to end)"
	@echo "make setup  - install Debian packages, the virtual environment and the lab image"
	@echo "make lint   - ruff, mypy and the import layers (lint-imports)"
	@echo "make bench  - benchmarks (bench/results/latest.json)"

setup: apt venv oscal-validator image

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "setup: run as root to install: $$missing" >&2; exit 3; fi; \
		echo "Installing Debian packages:" $$missing; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# The system sshd is only needed as a binary for tests; never leave it listening.
	@if command -v systemctl >/dev/null && systemctl is-enabled ssh >/dev/null 2>&1; then \
		systemctl disable --now ssh >/dev/null 2>&1 || true; fi

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

oscal-validator: $(OSCAL_STAMP)

$(OSCAL_STAMP):
	@test -x $(OSCAL_VENV)/bin/python || $(PYTHON) -m venv $(OSCAL_VENV)
	$(OSCAL_VENV)/bin/python -m pip install -q 'compliance-trestle==$(TRESTLE_VERSION)'
	@rm -f $(OSCAL_VENV)/.installed-*
	@touch $@

image: venv
	$(AUDITOR) lab build-image

demo: setup
	$(AUDITOR) lab up
	@rm -rf $(DEMO_OUT)
	@rc=0; $(AUDITOR) audit --inventory "$$($(AUDITOR) lab inventory)" --out $(DEMO_OUT) || rc=$$?; \
	echo; echo "Audit exit code: $$rc (0 pass, 1 fail, 2 inconclusive, 3 could not run)"; \
	echo "Findings: $(DEMO_OUT)/findings.json"; \
	echo "Report:   $(CURDIR)/$(DEMO_OUT)/report.ja.html (日本語), $(CURDIR)/$(DEMO_OUT)/report.en.html (English)"; \
	[ $$rc -le 2 ]

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test-unit: venv oscal-validator
	$(BIN)/pytest -m "not lab" -q

test-lab: setup
	$(LAB_LOCK) $(BIN)/pytest -m lab -q

test: setup lint
	$(LAB_LOCK) $(BIN)/pytest -q

bench: setup
	$(BIN)/python -m bench

lab-down: venv
	$(AUDITOR) lab down

clean:
	rm -rf $(VENV) $(OSCAL_VENV) out .pytest_cache .mypy_cache .ruff_cache
