# modelyard in a container. The base image is a build argument: any Debian-like image; Debian's
# python3 and venv are installed when it lacks them.
#   docker build --build-arg BASE=debian:bookworm-slim -t modelyard .
#   docker run -d --network host -v modelyard-data:/data modelyard
# With --network host it serves on 127.0.0.1:8050 of the machine, and reaches runtimes (Ollama,
# llama.cpp) on the machine's loopback. docs/CONTAINERS.md says how to let it manage sibling
# containers through the Docker socket, and what that gives it.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

RUN if ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates && rm -rf /var/lib/apt/lists/*; \
    fi

# The dependencies first, in their own layer: rebuilt only when pyproject.toml changes.
WORKDIR /opt/modelyard
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --quiet -r requirements.txt
COPY README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-cache-dir --quiet --no-deps .

ENV PATH=/opt/venv/bin:$PATH \
    MODELYARD_HOST=127.0.0.1 \
    MODELYARD_PORT=8050 \
    MODELYARD_DATA_DIR=/data \
    MODELYARD_MODELS_DIR=/models
VOLUME /data
EXPOSE 8050
ENTRYPOINT ["modelyard", "serve"]
