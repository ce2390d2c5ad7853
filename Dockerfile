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
COPY runtime runtime
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
 && useradd --system --home-dir /var/lib/e2ad --no-create-home e2ad \
 && install -d -o e2ad -g e2ad -m 0750 /var/lib/e2ad
# The stages run as e2ad, so their data directory (compose.yaml's state_dir volume) must be e2ad's
# in the image: an empty named volume copies the owner of the image's directory, and a directory
# missing from the image is created root-owned (PermissionError at start). It is e2ad's home too,
# so the default state_dir (~/.local/state/e2ad) is writable as well.
USER e2ad
ENTRYPOINT ["e2ad"]
