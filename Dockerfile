# The e2ad image: one image, one stage per container (`e2ad ingest|process|write`).
FROM python:3.11-slim-bookworm
WORKDIR /opt/e2ad
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY ingest ingest
COPY processors processors
COPY writers writers
COPY e2ad e2ad
# pip compiles .pyc on install: msgraph-sdk's 16,000 modules would otherwise compile at every start.
RUN pip install --no-cache-dir . && useradd --system e2ad
USER e2ad
ENTRYPOINT ["e2ad"]
