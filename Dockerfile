# The API image: slim Python, dependencies pinned by uv.lock, a non-root user,
# `dataarch` as the entry point. No secret is baked in: they arrive as files.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --no-cache

COPY app.py ./
COPY api/ api/
COPY dataarch/ dataarch/
COPY cli/ cli/
COPY backup/ backup/
COPY reports/ reports/
COPY schema/ schema/
COPY procedures/ procedures/
COPY views/ views/
COPY data/ data/
RUN uv sync --frozen --no-dev --no-cache

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin dataarch \
    && mkdir -p /srv/dataarch/backups /srv/dataarch/reports /app/var \
    && chown -R dataarch /srv/dataarch /app/var
USER dataarch

EXPOSE 8000
ENTRYPOINT ["dataarch"]
# install the schema (never the synthetic sample: this is someone's database), serve
CMD ["up", "--host", "0.0.0.0", "--port", "8000", "--no-sample"]
