# fairwatch worker image: `docker build -t fairwatch .` then `docker run fairwatch worker`.
# Two stages so that the runtime image has no compiler, pip cache or build tree.
# Base pinned to an exact Python patch release and Debian release; pin a digest too in your registry
# mirror (`FROM python:3.12.12-slim-bookworm@sha256:...`) if your policy asks for it.
ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/fairwatch
WORKDIR /src
# Only what the wheel needs; tests, benchmarks and the local-stack scripts stay out (.dockerignore).
COPY pyproject.toml README.md ./
COPY streams ./streams
RUN /opt/fairwatch/bin/pip install .

FROM ${PYTHON_IMAGE}
# FAIRWATCH_SCHEMAS: the installed package cannot find the checkout's schemas/ (store.py looks
# beside the source tree), so migrations and contract examples are read from a copy.
# FAIRWATCH_WEB_HOST: in a container the web endpoint must listen beyond loopback for probes.
ENV PATH=/opt/fairwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FAIRWATCH_SCHEMAS=/opt/fairwatch-schemas \
    FAIRWATCH_WEB_HOST=0.0.0.0 \
    FAIRWATCH_DATA_DIR=/var/lib/fairwatch
# A fixed numeric uid/gid so that Kubernetes runAsNonRoot can verify it and fsGroup can match it.
RUN groupadd --system --gid 10001 fairwatch \
    && useradd --system --uid 10001 --gid fairwatch --home-dir /var/lib/fairwatch --shell /usr/sbin/nologin fairwatch \
    && install -d -o fairwatch -g fairwatch -m 0750 /var/lib/fairwatch
COPY --from=build /opt/fairwatch /opt/fairwatch
COPY schemas /opt/fairwatch-schemas
USER 10001:10001
WORKDIR /var/lib/fairwatch
VOLUME ["/var/lib/fairwatch"]
EXPOSE 6066
ENTRYPOINT ["fairwatch"]
CMD ["worker"]
