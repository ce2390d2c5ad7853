# syntax=docker/dockerfile:1
# The e2ad image: one image, one stage per container (`e2ad ingest|process|write`).

# gssapi (ad.auth kerberos) has no Linux wheel: build it, and e2ad's other wheels, here.
FROM python:3.11-slim-bookworm AS wheels
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libkrb5-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY ingest ingest
COPY processors processors
COPY writers writers
COPY e2ad e2ad
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[kerberos]'

FROM python:3.11-slim-bookworm
# The run-time half of Kerberos for gssapi; no compiler in the image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgssapi-krb5-2 \
 && rm -rf /var/lib/apt/lists/*
# pip compiles .pyc on install: msgraph-sdk's 16,000 modules would otherwise compile at every start.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels 'e2ad[kerberos]' \
 && useradd --system e2ad
USER e2ad
ENTRYPOINT ["e2ad"]
