# voucher-gateway: the two Quick start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Builds a PKI, creates, signs and verifies vouchers, and shows forged ones refused (embedded default).
demo: $(STAMP)
	$(BIN)/vgw demo

# Installs and starts RabbitMQ and PostgreSQL on loopback (temporary data dirs), runs the whole suite, stops them.
test: $(STAMP)
	scripts/with-test-services $(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (JSON). Long soaks go here too, never into `make test`.
bench: $(STAMP)
	$(BIN)/vgw bench verify
	$(BIN)/vgw bench intake --rate half
	$(BIN)/vgw bench approvals
	$(BIN)/vgw bench bank
	scripts/with-test-services sh -c '$(BIN)/vgw bench bank --amqp "$$VGW_TEST_AMQP_URL"'

clean:
	rm -rf $(VENV) build *.egg-info
