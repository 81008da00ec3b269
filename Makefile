# Two commands do everything: `make run` (the app with demo data) and `make test` (the suite).
SHELL := /bin/bash
UV ?= python -m uv
PG_URL ?= postgres://postgres@127.0.0.1:5432
# Two checkouts on one machine can test side by side: make test DB_NAME=other BROKER_DB=12 CACHE_DB=13
DB_NAME ?= consent
BROKER_DB ?= 14
CACHE_DB ?= 15
TEST_ENV := DATABASE_URL=$(PG_URL)/$(DB_NAME) WAREHOUSE_DATABASE_URL=$(PG_URL)/$(DB_NAME)_warehouse \
	CELERY_BROKER_URL=redis://127.0.0.1:6379/$(BROKER_DB) REDIS_URL=redis://127.0.0.1:6379/$(CACHE_DB) \
	PROMETHEUS_MULTIPROC_DIR=$$(mktemp -d)

.PHONY: install run test lint services

install:
	@python -m uv --version >/dev/null 2>&1 || python -m pip install --quiet uv
	$(UV) sync --frozen

run: install
	$(UV) run python manage.py migrate --no-input
	$(UV) run python manage.py migrate --no-input --database warehouse
	$(UV) run python manage.py seed_demo
	@# Sign the demo's log and check it now, not at the first hourly check (support pages say).
	$(UV) run python manage.py audit_checkpoint
	-$(UV) run python manage.py verify_audit
	@# The processes add up their metrics in DATA_DIR/metrics, emptied at each start; a command
	@# run by hand meanwhile (reconcile, say) counts there too, and shows on /metrics.
	rm -rf "$${DATA_DIR:-var}/metrics"
	$(UV) run honcho start -f Procfile

services:
	@bash .ci/services

test: install services
	$(TEST_ENV) $(UV) run pytest $(PYTEST_ARGS)
	@# The audit log's protections once more, on the embedded default's SQLite.
	env -u DATABASE_URL -u WAREHOUSE_DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL \
		DATA_DIR=$$(mktemp -d) $(UV) run pytest -m sqlite -q -p no:cacheprovider

lint: install
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy .
