# syntax=docker/dockerfile:1
# bindwatch: one image, its commands (see docs/deployment.md).
#   gateway  python -m gateway                      (default CMD; port 8080)
#   worker   faust -L uvloop -A stream.app worker -l info     (port 6066; RocksDB state in BINDWATCH_DATA_DIR)
#   topics   python -m stream.admin create-topics   (one-shot, before both)
#   console  python -m console                      (port 8081; feeds Alertmanager)
#
# Build:  docker build -t bindwatch:local .
# Runtime dependencies are installed from wheels only, at the exact versions of requirements/lock.txt (the
# pins CI tests), and the build fails if anything in the image is not pinned there. The dev tools in the lock
# (pytest, ruff, ...) stay out of the image; mypy and gcc are in the build stage only, to compile the stream core
# (stream/native.py). Every pinned runtime dependency has a linux/amd64 wheel; faust-streaming 0.15.3 has none
# for arm64 (see docs/deployment.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: resolve and install into a virtualenv that the runtime stage copies as it is ----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# The same pip as scripts/bootstrap.sh. The virtualenv gets no pip and no setuptools of its own:
# pip installs into it from outside (--python), so neither ships in the final image.
RUN python -m pip install "pip==26.3" \
 && python -m venv --without-pip /opt/bindwatch
WORKDIR /src
# Dependencies first (a separate layer, rebuilt only when the lock or the dependency list changes).
COPY requirements/lock.txt requirements/lock.txt
COPY pyproject.toml deploy/check_pins.py ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/runtime-requirements.txt \
 && pip --python /opt/bindwatch/bin/python install --only-binary=:all: \
      --constraint requirements/lock.txt --requirement /tmp/runtime-requirements.txt
# Then the project itself, without dependencies; its build backend (setuptools) is pinned by the lock too.
COPY README.md ./
COPY schemas schemas
COPY gateway gateway
COPY stream stream
COPY console console
# The compiled stream core (stream/native.py): mypyc (pinned by the lock) and a C compiler, in this stage only. It is
# built for this image's Python, which the runtime stage shares, and installed with the package (package-data). The
# import check below runs outside /src, so it imports the installed package (python -c puts the cwd first).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
 && pip install --constraint requirements/lock.txt mypy setuptools \
 && BINDWATCH_NATIVE=off python -m stream.build_native
RUN pip --python /opt/bindwatch/bin/python install --no-deps --build-constraint requirements/lock.txt . \
 && pip --python /opt/bindwatch/bin/python freeze --all | python check_pins.py requirements/lock.txt \
 && cd /tmp && BINDWATCH_NATIVE=require /opt/bindwatch/bin/python -c 'import gateway.__main__, stream.admin, console.__main__, faust.cli' \
 && test -x /opt/bindwatch/bin/faust

# ---- runtime: the slim base, the virtualenv, a non-root user; no compiler, no pip -------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="bindwatch" \
      org.opencontainers.image.description="NXCLOUD binding-failure gateway and Faust stream workers"
# pip and setuptools of the base image are not needed at run time.
RUN python -m pip uninstall -y -q pip setuptools wheel \
 && groupadd --system --gid 10001 bindwatch \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin bindwatch \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/bindwatch
COPY --from=build /opt/bindwatch /opt/bindwatch
ENV PATH=/opt/bindwatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    BINDWATCH_HOST=0.0.0.0 \
    BINDWATCH_WEB_HOST=0.0.0.0 \
    BINDWATCH_DATA_DIR=/var/lib/bindwatch \
    BINDWATCH_NATIVE=require
WORKDIR /tmp
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080 6066 8081
CMD ["python", "-m", "gateway"]
