# Two commands do everything: `make run` (the app with demo data) and `make test` (the suite).
SHELL := /bin/bash
UV ?= python -m uv
PG_URL ?= postgres://postgres@127.0.0.1:5432
TEST_ENV := DATABASE_URL=$(PG_URL)/consent WAREHOUSE_DATABASE_URL=$(PG_URL)/consent_warehouse \
	CELERY_BROKER_URL=redis://127.0.0.1:6379/14 REDIS_URL=redis://127.0.0.1:6379/15

.PHONY: install run test lint services

install:
	@python -m uv --version >/dev/null 2>&1 || python -m pip install --quiet uv
	$(UV) sync --frozen

run: install
	$(UV) run python manage.py migrate --no-input
	$(UV) run python manage.py seed_demo
	$(UV) run honcho start -f Procfile

services:
	@bash .ci/services

test: install services
	$(TEST_ENV) $(UV) run pytest

lint: install
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy .
