# The two commands of the README: `make run` and `make test`.
# The virtual environment is .venv, pinned by uv.lock; uv itself is
# bootstrapped into it with pip, so only python3 (>= 3.11) is needed.

VENV := .venv
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.synced-stamp

.PHONY: run test soak lint system-deps clean

$(STAMP): pyproject.toml uv.lock
	@test -x $(UV) || { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q uv==$(UV_VERSION); }
	$(UV) sync --frozen --inexact --quiet
	@touch $@

# make run PORT=8080 serves elsewhere; the client commands find it (var/api-url)
run: $(STAMP)
	$(VENV)/bin/dataarch up $(if $(PORT),--port $(PORT))

lint: $(STAMP)
	$(VENV)/bin/sqlfluff lint schema procedures views
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

system-deps:
	@.ci/system-deps

test: system-deps lint
	$(VENV)/bin/pytest

# operations together for ten minutes, kill -9 included (tests/test_soak.py)
soak: system-deps $(STAMP)
	DATAARCH_SOAK_SECONDS=600 $(VENV)/bin/pytest tests/test_soak.py -n 0 -s -q

clean:
	-$(VENV)/bin/dataarch db stop
	rm -rf $(VENV) var
