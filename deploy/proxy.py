"""nginx in front of a running dashboard, from deploy/normlab.conf.template, without Docker.

    python deploy/proxy.py --upstream 127.0.0.1:8501 --listen 8080     # nginx in the foreground, as you
    python deploy/proxy.py --upstream 127.0.0.1:8501 --listen 80 --print > /etc/nginx/conf.d/normlab.conf

The first runs Debian's nginx as the current user with every path of its own (pid, logs, temporary
files, its cache of Streamlit's static files, the socket where it gzips each of them once) in one
folder, until Ctrl-C; the second prints the site for a system nginx, its cache in
/var/cache/nginx/normlab (--cache), its gzip server on 127.0.0.1:8081 (--gzip). tests/test_proxy.py
and benchmarks/bench_visitor_bytes.py start it the same way. Knows nothing of Streamlit but its address.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().with_name("normlab.conf.template")
PLACEHOLDERS = ("NORMLAB_UPSTREAM", "NORMLAB_PROXY_LISTEN", "NORMLAB_PROXY_CACHE", "NORMLAB_PROXY_GZIP")
SYSTEM_CACHE = "/var/cache/nginx/normlab"  # Debian's and the official image's nginx own /var/cache/nginx
SYSTEM_GZIP = "127.0.0.1:8081"  # where a system nginx compresses each static file once (a private address)
SOCKET_PATH_MAX = 100  # a unix socket's path is at most 107 bytes on Linux


def nginx_binary() -> str | None:
    """Debian's nginx, also where /usr/sbin is not on the PATH (an ordinary user's shell)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def site(upstream: str, listen: str, cache: str = SYSTEM_CACHE, gzip: str = SYSTEM_GZIP) -> str:
    """The template with its placeholders filled, as the nginx image's entrypoint fills them (envsubst);
    ``cache`` is the folder of nginx's copies of Streamlit's static files (its workers write it),
    ``gzip`` the private address ("host:port" or "unix:path") where nginx compresses each one once."""
    text = TEMPLATE.read_text()
    for name, value in zip(PLACEHOLDERS, (upstream, listen, cache, gzip), strict=True):
        text = text.replace(f"${{{name}}}", value)
    assert "${" not in text, "the template names a placeholder that site() does not fill"
    return text


def nginx_conf(workdir: Path, upstream: str, listen: str) -> str:
    """A whole nginx.conf around the site with every path under ``workdir`` (its static-file cache in
    ``workdir/cache``, its private gzip server on ``workdir/gzip.sock``), in the foreground."""
    w = workdir.resolve()
    # As root, nginx would hand requests to workers running as `nobody`, who cannot write the
    # temporary files (a 4.7 MB bundle passes through them) in a private folder: keep the caller's user.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {w}/{kind}_temp;"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    cache = w / "cache"
    return (f"{user}daemon off;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n"
            f"events {{\n    worker_connections 512;\n}}\n"
            f"http {{\n    access_log {w}/access.log;\n{temp}\n\n"
            f"{site(upstream, listen, str(cache), gzip_address(w))}}}\n")


def gzip_address(workdir: Path) -> str:
    """nginx's private gzip server in ``workdir``: a unix socket there (no port to pick or collide), or
    a free loopback port where the folder's path is too long for a socket's name."""
    sock = workdir / "gzip.sock"
    if len(str(sock)) <= SOCKET_PATH_MAX:
        return f"unix:{sock}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def _address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return (host or "127.0.0.1").strip("[]"), int(port)


def start_proxy(upstream: str, listen: str, workdir: Path, timeout: float = 15.0) -> subprocess.Popen:
    """nginx listening on ``listen`` ("8080" or "127.0.0.1:8080") in front of ``upstream`` ("host:port"),
    in its own process group; returns once it accepts connections. Stop it with ``stop_proxy``."""
    nginx = nginx_binary()
    if nginx is None:
        raise FileNotFoundError("nginx is not installed (apt-get install nginx)")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(workdir, upstream, listen))
    # nginx removes its socket when it exits, but not when it was killed: a stale one would refuse the bind.
    (workdir / "gzip.sock").unlink(missing_ok=True)
    log = (workdir / "nginx.out").open("w")
    # -e: the error log before the config is read (else nginx first opens /var/log/nginx/error.log)
    proc = subprocess.Popen([nginx, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    host, port = _address(listen)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            errors = (workdir / "nginx.out").read_text() + (workdir / "error.log").read_text()
            raise RuntimeError(f"nginx exited with status {proc.returncode}: {errors.strip()}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                stop_proxy(proc)
                raise TimeoutError(f"nginx did not listen on {listen} within {timeout:.0f} s") from None
            time.sleep(0.1)


def stop_proxy(proc: subprocess.Popen) -> None:
    """Stop nginx's master and workers: SIGTERM to the group, SIGKILL if it lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", default="127.0.0.1:8501", help="where Streamlit listens (host:port)")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="nginx's listen: a port or address:port")
    parser.add_argument("--print", action="store_true", help="print the site for /etc/nginx/conf.d and exit")
    parser.add_argument("--cache", default=SYSTEM_CACHE,
                        help="with --print: nginx's folder for its copies of the static files")
    parser.add_argument("--gzip", default=SYSTEM_GZIP,
                        help="with --print: a private address where nginx compresses each static file once")
    parser.add_argument("--dir", type=Path,
                        help="nginx's folder (config, pid, logs, cache); default a new temporary one")
    args = parser.parse_args(argv)
    if args.print:
        sys.stdout.write(site(args.upstream, args.listen, args.cache, args.gzip))
        return 0
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="normlab-nginx-"))
    proc = start_proxy(args.upstream, args.listen, workdir)
    host, port = _address(args.listen)
    print(f"nginx: http://{host}:{port} -> http://{args.upstream} (logs in {workdir}); Ctrl-C stops it",
          flush=True)
    # The handler only signals nginx (waiting inside it would block on the wait it interrupted).
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(proc.pid, signal.SIGTERM))
    try:
        proc.wait()
    except KeyboardInterrupt:
        stop_proxy(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
