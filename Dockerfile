# CPU image: the package with its generated gRPC stubs, the default model repository, a non-root
# user, and a health check through grpc.health.v1.
#   docker build -t convnet-serve .
#   docker run --rm -p 8001:8001 -p 8002:8002 convnet-serve
# Mount your own repository over /models to serve other models (-v "$PWD/models:/models:ro").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
COPY kernels/ kernels/
COPY exporter/ exporter/
COPY protos/ protos/
COPY service/ service/
COPY deploy/healthcheck.py deploy/healthcheck.py
# The same install path as scripts/install.sh: the package (editable, so the stubs generated into
# service/generated/ are the ones imported), then the stubs, then the default models.
RUN pip install -e . && python -m protos.build
ARG BUILD_MODELS=1
RUN mkdir -p /models && if [ "$BUILD_MODELS" = 1 ]; then python -m exporter defaults --out /models; fi

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin convnet
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
COPY --from=build /models /models
WORKDIR /app
USER convnet
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "deploy/healthcheck.py", "--target", "127.0.0.1:8001"]
ENTRYPOINT ["python", "-m", "service", "serve"]
CMD ["--models", "/models", "--host", "0.0.0.0", "--port", "8001", "--metrics-port", "8002", "--http-port", "8000"]
