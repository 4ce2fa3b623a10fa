# normlab dashboard, after Streamlit's Docker recipe: a slim Python base, a non-root user, a health check,
# the app served headless on 0.0.0.0:8501. See docs/deploy.md.
#
#   docker build -t normlab .                 # CPU torch (small image)
#   docker run -p 8501:8501 normlab
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130 -t normlab:cuda .
#   docker run --gpus all -p 8501:8501 normlab:cuda
#   podman build --format docker -t normlab .   # Podman's default (OCI) format drops the HEALTHCHECK
FROM python:3.11-slim

# Where torch comes from. PyTorch's CPU wheels keep the image small; a CUDA index (cu130, cu128, ...)
# gives a torch that bundles its CUDA libraries and uses the GPU that `docker run --gpus all` passes in
# (the host supplies only the driver, which must be new enough for that CUDA version).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# MALLOC_MMAP_THRESHOLD_: large tensors go back to the system when freed, so resident memory follows
# the budget's estimate instead of growing with heap fragmentation (docs/deploy.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_MMAP_THRESHOLD_=1048576 \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    NORMLAB_STORE=/app/results

WORKDIR /app

# No system packages: nothing on the server draws text. Figures, Korean ones included, are exported by the
# viewer's browser (each chart's camera button, ui/compute/views.py), with the fonts that browser shows them in.

# Dependencies first, so that a code change does not reinstall them. torch comes from the chosen index
# alone, held to the version range in requirements.txt; the rest of requirements.txt then finds it
# installed.
COPY requirements.txt ./
RUN pip install --index-url "${TORCH_INDEX_URL}" --constraint requirements.txt torch \
    && pip install --requirement requirements.txt

COPY . .
# The server runs as an unprivileged user, numeric so that the host can resolve it too. `python -m ui.warm`
# computes the paper claims and every page's default view into the image's result store (NORMLAB_STORE),
# owned by that user: a lecture's claims open at once for every visitor, and never compute again after
# a restart. The install's own leftovers in /app (build/, normlab.egg-info/) go in the same layer.
# The warm-up computes on one torch thread: its networks are small, and torch's two threads, spinning on a
# build host busy with anything else, made the whole build 974 s instead of 159 s on 2 shared cores
# (docs/deploy.md, "Checking the container").
RUN pip install --no-deps . \
    && rm -rf build normlab.egg-info \
    && groupadd --gid 1000 normlab \
    && useradd --create-home --uid 1000 --gid 1000 normlab \
    && OMP_NUM_THREADS=1 python -m ui.warm \
    && chown -R 1000:1000 /app/results
USER 1000:1000

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4); sys.exit(r.read() != b'ok')"]
# The launcher runs `streamlit run app.py` headless and warms it (ui/server.py), so a visitor's first
# typed page path opens that page; it stops the server on docker stop.
ENTRYPOINT ["python", "-m", "ui.server", "--address", "0.0.0.0", "--port", "8501"]
