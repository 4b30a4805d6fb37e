# CPU image: the service with its runtime dependencies only, the default model repository, a
# non-root user, and a health check through grpc.health.v1.
#   bash scripts/build-image.sh            (docker, or podman with a local Debian base; see docs/DEPLOY.md)
#   docker build -t convnet-serve .
#   docker run --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 convnet-serve
# Mount your own repository over /models to serve other models (-v "$PWD/models:/models:ro").
# The builder stage generates the gRPC stubs and the default models (grpcio-tools, onnx,
# scikit-learn) and builds the wheel; the runtime stage installs that wheel alone.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# PIP_CERT: a CA bundle for pip where the index is reached through an intercepting proxy.
ARG PIP_CERT=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so a change of the sources reuses these layers:
# /opt/venv gets the runtime dependencies, /opt/tools those plus the build extra.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extra = p['optional-dependencies']; own = lambda ds: [d for d in ds if not d.startswith(p['name'])]; \
open('/tmp/runtime.txt', 'w').write('\\n'.join(p['dependencies'])); \
open('/tmp/build.txt', 'w').write('\\n'.join(own(extra['build']) + own(extra['train'])))" \
    && python -m venv /opt/venv && /opt/venv/bin/pip install -q ${PIP_CERT:+--cert "$PIP_CERT"} -r /tmp/runtime.txt \
    && python -m venv /opt/tools \
    && /opt/tools/bin/pip install -q ${PIP_CERT:+--cert "$PIP_CERT"} -r /tmp/runtime.txt -r /tmp/build.txt
# The sources: the whole context less .dockerignore, so a new package of pyproject.toml is in.
COPY . .
RUN /opt/tools/bin/pip install -q --no-deps -e . \
    && /opt/tools/bin/python -m protos.build \
    && /opt/tools/bin/pip wheel -q --no-deps -w /wheels .
ARG BUILD_MODELS=1
RUN mkdir -p /models && if [ "$BUILD_MODELS" = 1 ]; then /opt/tools/bin/python -m training defaults --out /models; fi
RUN /opt/venv/bin/pip install -q --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip uninstall -q -y pip setuptools \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
# HOME in /tmp: the one writable place when the root filesystem is read-only (deploy/k8s).
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
RUN groupadd --system --gid 10001 convnet \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin convnet
COPY --from=build /opt/venv /opt/venv
COPY --from=build /models /models
COPY deploy/healthcheck.py /app/deploy/healthcheck.py
WORKDIR /app
USER 10001:10001
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "deploy/healthcheck.py", "--target", "127.0.0.1:8001"]
ENTRYPOINT ["python", "-m", "service", "serve"]
CMD ["--models", "/models", "--host", "0.0.0.0", "--port", "8001", "--metrics-port", "8002", "--http-port", "8000"]
