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
COPY unlearnd_client ./unlearnd_client
RUN pip install -e .

# Mount points of the named volumes (artifacts, keys), owned by the app user: a new named volume
# copies its directory's owner from the image, so without these the user could not write there.
RUN useradd --uid 10001 --create-home unlearnd \
    && mkdir -p /data/artifacts /data/keys \
    && chown unlearnd:unlearnd /data/artifacts /data/keys \
    && chmod 0700 /data/keys
USER unlearnd

ENV UNLEARND_ARTIFACT_DIR=/data/artifacts \
    UNLEARND_SIGNING_KEY_FILE=/data/keys/signing-key.pem
EXPOSE 8000
CMD ["unlearnd", "api", "--host", "0.0.0.0", "--port", "8000"]
