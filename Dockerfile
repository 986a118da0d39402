# vaesearch: one image for the Ray head, the Ray workers and the MLflow tracking server.
#   docker build -t vaesearch .                          # CUDA torch (NVIDIA GPU hosts)
#   docker build -t vaesearch --build-arg TORCH_VARIANT=cpu .
# TORCH_VARIANT: cuda = PyPI's torch wheel (built with CUDA on Linux x86_64); anything else
# (cpu, cu126, ...) = that index of download.pytorch.org/whl/.
FROM python:3.11-slim-bookworm

ARG TORCH_VARIANT=cuda
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

# torch first, in its own layer: it is most of the image and changes least.
RUN if [ "$TORCH_VARIANT" = "cuda" ]; then \
        pip install "torch==${TORCH_VERSION}"; \
    else \
        pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"; \
    fi

WORKDIR /app
COPY pyproject.toml README.md ./
COPY search ./search
COPY trainables ./trainables
COPY configs ./configs
COPY deploy ./deploy
# The project pins ray, mlflow and torch; the extras add what the services need on top:
# ray[default] (dashboard, Jobs API), mlflow[auth] (basic-auth app), and psycopg 3, the driver
# SQLAlchemy 2 uses for postgresql:// URIs.
RUN pip install . "ray[default]" "mlflow[auth]" "psycopg[binary]==3.3.9" \
    && python -c "import torch, ray, mlflow, flask_wtf, psycopg, search.driver; print('torch', torch.__version__, 'ray', ray.__version__, 'mlflow', mlflow.__version__)"

# Non-root. The directories below are the mount points of the compose file's named volumes:
# a new named volume takes their ownership, so the user can write Tune results and artifacts.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin vaesearch \
    && mkdir -p /shared/ray_results /shared/data /mlartifacts \
    && chown -R vaesearch:vaesearch /shared /mlartifacts
USER vaesearch
WORKDIR /home/vaesearch

CMD ["vaesearch", "--help"]
