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

# The whole system on the embedded default: PKI, OCSP responder, gateway with the simulated bank, a business
# day of simulated agencies; exit 0 only if every voucher is final and the money reconciles.
demo: $(STAMP)
	$(BIN)/vgw demo

# The architecture contracts (import-linter) and the lint (ruff), both configured in pyproject.toml, first; then
# installs and starts RabbitMQ and PostgreSQL on loopback (temporary data dirs), runs the whole suite, stops them.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	scripts/with-test-services $(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (JSON). Long soaks go here too, never into `make test`.
bench: $(STAMP)
	$(BIN)/vgw bench verify
	$(BIN)/vgw bench intake --rate half
	$(BIN)/vgw bench approvals
	$(BIN)/vgw bench bank
	scripts/with-test-services sh -c '$(BIN)/vgw bench bank --amqp "$$VGW_TEST_AMQP_URL"'
	$(BIN)/vgw bench statement
	scripts/with-test-services $(BIN)/vgw bench sign
	$(BIN)/vgw sim year --scale 0.01

clean:
	rm -rf $(VENV) build *.egg-info
