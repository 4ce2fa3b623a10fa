#!/usr/bin/env bash
# The container, built and served for real: Podman builds the Dockerfile and runs it, and each check an
# operator would make prints one line (PASS or FAIL, what, the measurement), then a summary with timings.
#
#   sudo scripts/container_check.sh            # the whole check: ~5 minutes on 2 cores, 8-9 the first time
#   sudo scripts/container_check.sh --keep     # leave the image for a rerun with --no-build
#   sudo scripts/container_check.sh --no-build # check the image an earlier --keep run left
#
# What it does, as root on Debian (docs/deploy.md, "Checking the container"):
#   1. installs podman, runc, debootstrap and chromium from Debian's packages if they are missing;
#   2. makes a stand-in for the python:3.11-slim base when none is there: a Debian bookworm (debootstrap,
#      the host's apt mirror) with a venv at /usr/local, imported as localhost/python:3.11-slim. Base
#      images are often not pullable where this runs; the stand-in is kept for later runs (remove it with
#      `podman rmi localhost/python:3.11-slim`). It has Debian's Python 3.11.2, not the official image's;
#   3. builds the Dockerfile with `podman build --format docker` (Podman's OCI format drops HEALTHCHECK);
#      when pip's find-links folder holds PyPI's CPU torch wheel, it is served to the build as a local
#      index (TORCH_INDEX_URL), else the Dockerfile's default, PyTorch's CPU index, is used;
#   4. runs it and checks: healthy, uid 1000, every page draws in Chromium, the warmed claims open without
#      computing, every page's default view comes from the store, `podman stop` exits 0 well within the
#      grace, records persist on a named volume across a restart, and a `--memory 1g` run refuses the
#      ResNet-56 link by name and stays up.
# Podman's settings for this run go in a file of its own (CONTAINERS_CONF), not in /etc/containers: runc
# (crun rejects some VMs' hybrid cgroups) and a nofile limit a container without CAP_SYS_RESOURCE may set.
# Everything it creates is removed at the end, except the packages, the base image and its work folder.
#
# Environment: NORMLAB_CHECK_PYTHON (default .venv/bin/python: the project's venv, with Playwright from
# requirements-dev.txt), NORMLAB_CHECK_WORK (default /var/tmp/normlab-container-check).
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP=0
BUILD=1
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    --no-build) BUILD=0 KEEP=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "container_check: unknown argument $arg (expected --keep, --no-build or --help)" >&2; exit 2 ;;
  esac
done

IMAGE=localhost/normlab:check
BASE=localhost/python:3.11-slim
NAME=normlab-check
VOLUME=normlab-check-results
PY=${NORMLAB_CHECK_PYTHON:-.venv/bin/python}
WORK=${NORMLAB_CHECK_WORK:-/var/tmp/normlab-container-check}
LOGS=$WORK/logs
GRACE=10  # podman stop's default grace, as docker stop's
MEMORY_LINK="/variance-growth?net=resnet56&batch=128&image=32&norms=batchnorm&seeds=1"
# A view no warm-up computes (a seed of its own): the record that must survive the restart.
NEW_LINK="/variance-growth?norms=layernorm&seed=4242"

if [[ $(id -u) != 0 ]]; then
  echo "container_check: run as root (apt-get, debootstrap and rootful Podman)" >&2
  exit 2
fi
mkdir -p "$LOGS"
export CONTAINERS_CONF=$WORK/containers.conf
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF

STARTED=$EPOCHREALTIME
PASSED=0
FAILED=0
TIMINGS=()

seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# report PASS|FAIL WHAT DETAIL: one line per check.
report() {
  printf '%-4s  %-46s %s\n' "$1" "$2" "$3"
  if [[ $1 == PASS ]]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}
timing() { TIMINGS+=("$(printf '%-26s %7s s' "$1" "$2")"); }
# browser MODE [ARGS...]: the browser half's lines, reported as they come.
browser() {
  local status what detail
  while IFS=$'\t' read -r status what detail; do
    report "$status" "$what" "$detail"
  done < <("$PY" scripts/container_pages.py "http://127.0.0.1:$PORT" "$@" 2>>"$LOGS/browser.log" || true)
}
records() { podman exec "$1" find /app/results -name part-0.parquet | sort; }
# wait_healthy CONTAINER: seconds from now until `podman healthcheck run` passes (at most 120 s).
wait_healthy() {
  local start=$EPOCHREALTIME
  for _ in $(seq 240); do
    if podman healthcheck run "$1" >/dev/null 2>&1; then seconds_since "$start"; return 0; fi
    [[ $(podman inspect --format '{{.State.Running}}' "$1") == true ]] || return 1
    sleep 0.5
  done
  return 1
}
# wait_warmed CONTAINER: until the launcher's warm-up has run (its "serving ... (warmed)" line).
wait_warmed() {
  for _ in $(seq 300); do
    podman logs "$1" 2>&1 | grep -q "(warmed)" && return 0
    sleep 1
  done
  return 1
}
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# serve CONTAINER [podman run options...]: run the image detached on $PORT.
serve() {
  local name=$1
  shift
  podman run -d --name "$name" -p "127.0.0.1:$PORT:8501" "$@" "$IMAGE" >/dev/null 2>>"$LOGS/podman.log"
}
remove_containers() {
  podman rm -f -i -t 0 "$NAME" "$NAME-restarted" "$NAME-1g" >/dev/null 2>&1 || true
  podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}
cleanup() {
  remove_containers
  if [[ $KEEP == 0 ]]; then podman rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
summary() {
  echo
  echo "timings:"
  printf '  %s\n' "${TIMINGS[@]}"
  printf '  %-26s %7s s\n' "whole check" "$(seconds_since "$STARTED")"
  echo "container check: $PASSED passed, $FAILED failed (logs in $LOGS)"
}

# --- 1. The tools, from Debian's packages -------------------------------------------------------------
step=$EPOCHREALTIME
missing=()
for tool in podman runc debootstrap chromium; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$LOGS/apt.log" 2>&1
fi
report PASS "tools installed" "$(podman --version), runc $(runc --version | awk 'NR == 1 { print $3 }')${missing[*]:+ (installed now: ${missing[*]})}"
timing "tools" "$(seconds_since "$step")"
if ! "$PY" -c "import playwright" 2>/dev/null; then
  report FAIL "Playwright in $PY" "make the project's venv first (README), or set NORMLAB_CHECK_PYTHON"
  summary
  exit 1
fi

# --- 2. The stand-in base image -----------------------------------------------------------------------
step=$EPOCHREALTIME
if podman image exists "$BASE"; then
  report PASS "base image $BASE" "cached from an earlier run"
elif [[ $BUILD == 1 ]]; then
  mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  mirror=${mirror:-$(awk '$1 == "deb" && $2 ~ /^http/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)}
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$WORK/rootfs
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" \
    >"$LOGS/debootstrap.log" 2>&1
  # The host's network settings, pip settings and CA bundle: where TLS is intercepted (as on these
  # machines), pip in the build trusts only the host's bundle. A real deployment's base needs none of it.
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  [[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
  [[ -d /etc/xdg/pip ]] && mkdir -p "$rootfs/etc/xdg" && cp -r /etc/xdg/pip "$rootfs/etc/xdg/"
  # python and pip in /usr/local/bin as in the official image (a venv: Debian's PEP 668 marker stays out)
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root chroot "$rootfs" python3 -m venv /usr/local
  env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root chroot "$rootfs" \
    pip install -q --upgrade pip >>"$LOGS/debootstrap.log" 2>&1
  tar -C "$rootfs" -c . | podman import --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' - "$BASE" >>"$LOGS/debootstrap.log" 2>&1
  rm -rf "$rootfs"
  report PASS "base image $BASE" "made by debootstrap from $mirror in $(seconds_since "$step") s"
  timing "base image" "$(seconds_since "$step")"
fi

# --- 3. The image -------------------------------------------------------------------------------------
if [[ $BUILD == 1 ]]; then
  step=$EPOCHREALTIME
  build_args=()
  # pip's find-links folders (pip config), searched for PyPI's CPU torch wheel for this Python.
  wheel=""
  for dir in $("$PY" -m pip config list 2>/dev/null | awk -F"'" '/find-links/ { print $2 }' | sort -u); do
    found=$(ls "$dir"/torch-*+cpu-cp311-cp311-*linux*_x86_64.whl 2>/dev/null | sort -V | tail -n 1 || true)
    wheel=${found:-$wheel}
  done
  torch_from="PyTorch's CPU index"
  if [[ -n $wheel ]]; then
    # A PEP 503 index of that wheel and its dependencies, mounted into the build (no PyTorch index needed).
    index=$WORK/torch-index
    rm -rf "$index"
    "$PY" -m pip download -q --dest "$index/files" "$wheel" >"$LOGS/torch-index.log" 2>&1
    "$PY" - "$index" <<'EOF'
import re, sys
from pathlib import Path
from urllib.parse import quote
index = Path(sys.argv[1])
for wheel in sorted((index / "files").iterdir()):
    name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
    folder = index / "simple" / name
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "index.html").open("a") as page:
        page.write(f'<a href="../../files/{quote(wheel.name)}">{wheel.name}</a><br>\n')
EOF
    build_args=(-v "$index:/torchidx:ro" --build-arg TORCH_INDEX_URL=file:///torchidx/simple)
    torch_from="$(basename "$wheel") from a local index"
  fi
  # The CPU time too: on a shared machine the wall time says more about the neighbours than the build.
  TIMEFORMAT='%U %S'
  if { time podman build --format docker "${build_args[@]}" -t "$IMAGE" . >"$LOGS/build.log" 2>&1; } \
      2>"$LOGS/build-cpu.txt"; then
    built=$(seconds_since "$step")
    cpu=$(awk '{ printf "%.0f", $1 + $2 }' "$LOGS/build-cpu.txt")
    load=$(awk '{ print $3 }' /proc/loadavg)
    size=$(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.2f GB", $1 / 1e9 }')
    warmed=$(grep -o "computed [0-9]*, already stored [0-9]*" "$LOGS/build.log" | tail -n 1 || true)
    report PASS "image builds" "$built s ($cpu CPU-s, $(nproc) CPUs, load average $load), $size; torch: $torch_from; python -m ui.warm: ${warmed:-?}"
    timing "build" "$built"
  else
    report FAIL "image builds" "see $LOGS/build.log: $(tail -n 1 "$LOGS/build.log")"
    summary
    exit 1
  fi
elif ! podman image exists "$IMAGE"; then
  echo "container_check: --no-build, but there is no $IMAGE (run once with --keep)" >&2
  exit 2
fi
if [[ -n $(podman image inspect --format '{{.Config.Healthcheck}}' "$IMAGE" | grep -v '^<nil>$' || true) ]]; then
  report PASS "the image keeps its HEALTHCHECK" "$(podman image inspect --format '{{.Config.Healthcheck.Test}}' "$IMAGE")"
else
  report FAIL "the image keeps its HEALTHCHECK" "none: was it built with --format docker?"
fi

# --- 4. Served ----------------------------------------------------------------------------------------
PORT=$(free_port)
remove_containers  # left by an interrupted run
podman volume create "$VOLUME" >/dev/null
step=$EPOCHREALTIME
serve "$NAME" -v "$VOLUME:/app/results"
if healthy=$(wait_healthy "$NAME"); then
  report PASS "healthy" "$healthy s after podman run ($(podman inspect --format '{{.State.Health.Status}}' "$NAME"))"
  timing "to healthy" "$healthy"
else
  report FAIL "healthy" "not within 120 s; podman logs $NAME: $(podman logs "$NAME" 2>&1 | tail -n 1)"
  podman logs "$NAME" >"$LOGS/server.log" 2>&1 || true
  summary
  exit 1
fi
wait_warmed "$NAME" && timing "to warmed (launcher)" "$(seconds_since "$step")"
# Every process's real, effective, saved and file-system uid, read on the host (rootful: no user namespace).
pids=$(podman top "$NAME" hpid | awk 'NR > 1')
uids=$(for pid in $pids; do awk '$1 == "Uid:" { print $2; print $3; print $4; print $5 }' "/proc/$pid/status"; done |
  sort -u | paste -sd, -)
if [[ $uids == 1000 ]]; then
  report PASS "runs as uid 1000" "all $(wc -w <<<"$pids") processes: $(podman top "$NAME" user args | awk 'NR > 1 { print $1 ": " $2, $3, $4 }' | paste -sd';' -)"
else
  report FAIL "runs as uid 1000" "processes run as: $uids"
fi

# The claims first, on a fresh server: their records must all be in the image's store.
before=$(records "$NAME")
step=$EPOCHREALTIME
browser claims
after=$(records "$NAME")
if [[ $before == "$after" ]]; then
  report PASS "no record computed for the claims" "the store holds $(wc -l <<<"$after") records, as before"
else
  report FAIL "no record computed for the claims" "$(comm -13 <(echo "$before") <(echo "$after") | wc -l) new records"
fi
browser pages
after_pages=$(records "$NAME")
if [[ $after == "$after_pages" ]]; then
  report PASS "every default view comes from the store" "no page computed a new record"
else
  report FAIL "every default view comes from the store" "$(comm -13 <(echo "$after") <(echo "$after_pages") | wc -l) new records"
fi
timing "browser checks" "$(seconds_since "$step")"

# A new record, then a stop and a new container on the same volume.
browser chart "$NEW_LINK" --what "a view no warm-up made computes"
stored=$(records "$NAME")
new=$(comm -13 <(echo "$after_pages") <(echo "$stored") | wc -l)
step=$EPOCHREALTIME
podman stop -t "$GRACE" "$NAME" >/dev/null 2>>"$LOGS/podman.log"
stopped=$(seconds_since "$step")
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
timing "podman stop" "$stopped"
if [[ $code == 0 ]] && awk -v s="$stopped" 'BEGIN { exit !(s < 5) }'; then
  report PASS "podman stop exits 0 within the grace" "$stopped s, exit $code (grace $GRACE s)"
else
  report FAIL "podman stop exits 0 within the grace" "$stopped s, exit $code (grace $GRACE s)"
fi
podman logs "$NAME" >"$LOGS/server.log" 2>&1
# Nothing to warn about in a plain run; "Did not auto detect external IP": Streamlit asked an outside host.
complaints=$(grep -c -E "Traceback|WARNING|ERROR|Did not auto detect" "$LOGS/server.log" || true)
if [[ $complaints == 0 ]]; then
  report PASS "the server's log is clean" "$(wc -l <"$LOGS/server.log") lines, no traceback or warning"
else
  report FAIL "the server's log is clean" "$complaints traceback or warning lines in $LOGS/server.log"
fi
podman rm "$NAME" >/dev/null 2>>"$LOGS/podman.log"
serve "$NAME-restarted" -v "$VOLUME:/app/results"
wait_healthy "$NAME-restarted" >/dev/null && wait_warmed "$NAME-restarted" || true
restored=$(records "$NAME-restarted")
if [[ $new -ge 1 && $restored == "$stored" ]]; then
  report PASS "records persist across a restart" "$(wc -l <<<"$restored") records on volume $VOLUME in a new container, $new computed before the stop"
else
  report FAIL "records persist across a restart" "$new new before the stop; $(wc -l <<<"$stored") before, $(wc -l <<<"$restored") after"
fi
browser chart "$NEW_LINK" --what "it draws again after the restart"
if [[ $(records "$NAME-restarted") == "$restored" ]]; then
  report PASS "the persisted view opens without computing" "no new record"
else
  report FAIL "the persisted view opens without computing" "it was computed again"
fi
podman rm -f -t "$GRACE" "$NAME-restarted" >/dev/null 2>>"$LOGS/podman.log"

# --- 5. A memory-limited container --------------------------------------------------------------------
serve "$NAME-1g" --memory 1g
wait_healthy "$NAME-1g" >/dev/null && wait_warmed "$NAME-1g" || true
limit_line=$(podman logs "$NAME-1g" 2>&1 | grep -o "computations share at most [0-9,]* MiB" | head -n 1 || true)
report "$([[ -n $limit_line ]] && echo PASS || echo FAIL)" "--memory 1g: the limit is read at start" "${limit_line:-no such line in the log}"
browser refusal "$MEMORY_LINK" "this container allows" --what "--memory 1g: the ResNet-56 link is refused"
if [[ $(podman inspect --format '{{.State.Running}}' "$NAME-1g") == true ]] && podman healthcheck run "$NAME-1g" >/dev/null 2>&1; then
  report PASS "--memory 1g: the container stays up" "running and healthy after the refusal"
else
  report FAIL "--memory 1g: the container stays up" "exit $(podman inspect --format '{{.State.ExitCode}}' "$NAME-1g")"
fi
podman logs "$NAME-1g" >"$LOGS/server-1g.log" 2>&1

summary
[[ $FAILED == 0 ]]
