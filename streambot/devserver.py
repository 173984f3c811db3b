"""A local RTMP server (nginx with its RTMP module), for the demo and tests.

It listens on loopback only, records what it receives to FLV files (one per
publish, so a reconnect shows as a second file), lets any local player
watch (`ffplay rtmp://127.0.0.1:PORT/live/NAME`), and writes HLS
(`hls/NAME.m3u8` and its segments, copied, not re-encoded: the stream's own
frame rate and sound) for the console's watch page, so a browser is enough.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MODULE_PATHS = [
    Path("/usr/lib/nginx/modules/ngx_rtmp_module.so"),
    Path("/usr/lib64/nginx/modules/ngx_rtmp_module.so"),
]

CONFIG = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log {log_level};
{load_module}
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application live {{
            live on;
            record {record};
            record_path {dir}/rec;
            record_unique on;
            allow play 127.0.0.1;
            deny play all;
{hls}
        }}
    }}
}}
"""


# Segments follow the stream's keyframes (2 s); a reconnect continues the same playlist.
HLS = """\
            hls on;
            hls_path {dir}/hls;
            hls_fragment 2s;
            hls_playlist_length 30s;
            hls_continuous on;
            hls_cleanup on;"""


class RtmpServerError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]  # (host, port) for an IPv4 socket
        return port


class RtmpServer:
    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        record: bool = True,
        hls: bool = True,
        log_connections: bool = False,
    ) -> None:
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="streambot-rtmp-"))
        self.record = record
        self.hls = hls
        self.log_connections = log_connections  # nginx logs each client at "info": see `connections`
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def recordings(self) -> list[Path]:
        return sorted((self.dir / "rec").glob("*.flv"), key=lambda p: p.stat().st_mtime)

    @property
    def hls_dir(self) -> Path:
        """Where `NAME.m3u8` and its segments are written, while `hls` is on."""
        return self.dir / "hls"

    @property
    def connections(self) -> int:
        """How many clients have connected since the server started, its own start-up probe
        included (with `log_connections`; nginx-rtmp logs every TCP client at level info)."""
        log_path = self.dir / "error.log"
        if not self.log_connections or not log_path.exists():
            return 0
        return log_path.read_text(errors="replace").count(" client connected ")

    def url(self, name: str = "stream") -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def start(self, timeout: float = 10.0) -> RtmpServer:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise RtmpServerError("nginx is not installed (apt-get install nginx libnginx-mod-rtmp).")
        module = next((p for p in MODULE_PATHS if p.exists()), None)
        if module is None:
            raise RtmpServerError("nginx's RTMP module is missing (apt-get install libnginx-mod-rtmp).")
        (self.dir / "rec").mkdir(parents=True, exist_ok=True)
        self.hls_dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(
            CONFIG.format(
                dir=self.dir,
                port=self.port,
                load_module=f"load_module {module};",
                record="all" if self.record else "off",
                hls=HLS.format(dir=self.dir) if self.hls else "",
                log_level="info" if self.log_connections else "warn",
            )
        )
        self.proc = subprocess.Popen(
            [nginx, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Not in the terminal's process group: Ctrl-C stops the show first,
            # and the show stops the server after its last packet.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
                raise RtmpServerError(f"nginx exited at start: {err.splitlines()[-1] if err else 'no message'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RtmpServerError(f"nginx did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s.")

    def stop(self) -> None:
        """Stop nginx; recordings are finalised first. Safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RtmpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
