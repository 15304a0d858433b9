# One image for the API, the worker, beat and the migration step (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/unlearnd

# torch first, pinned: from PyPI this is the CUDA build the GPU workers need. For a CPU-only image
# pass --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""
RUN pip install "torch==${TORCH_VERSION}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
RUN pip install -e .

RUN useradd --uid 10001 --create-home unlearnd \
    && mkdir -p /data/artifacts \
    && chown unlearnd /data/artifacts
USER unlearnd

ENV UNLEARND_ARTIFACT_DIR=/data/artifacts
EXPOSE 8000
CMD ["unlearnd", "api", "--host", "0.0.0.0", "--port", "8000"]
