"""Local S3 and GCS servers for tests, the demo, CI and the benchmark (never deployed).

- S3: moto in server mode, in its own process on a free port, with IAM enforcement: the first
  `BOOTSTRAP_REQUESTS` requests are unchecked (they create an admin user with an access key), and
  every later request is checked against IAM, so a wrong key or a missing permission is refused for
  real. Everything else (buckets, users with narrower policies) is created with the admin key.
- GCS: gcp-storage-emulator on a free port, in memory. It ignores credentials, so the service-account
  keys made here name a `TokenEndpoint` on loopback as their `token_uri`: the client's real OAuth
  flow (a JWT signed with the key's RSA private key, exchanged for a token) runs without the internet.

`python -m exporter.local.cloudservers` starts both and prints their settings as KEY=VALUE lines
(what `.ci/run` exports for the tests), then runs until stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Any

from .devstorage import _listening, free_port
from .loopback import JsonHandler, StandIn, serve

BOOTSTRAP_REQUESTS = 3  # create_user, put_user_policy, create_access_key
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
TEST_REGION = "us-east-1"
S3_MIN_PART_BYTES = 5 * 1024 * 1024  # AWS's minimum size of a multipart upload's every part but the last
# The suite's moto takes parts from 256 KiB (GCS's grid): its resume and split grids cut the same blocks from a
# twentieth of the rows. One test keeps a moto at AWS's own minimum (tests/test_s3_part_minimum.py).
TEST_S3_MIN_PART_BYTES = 256 * 1024


def _binary(name: str) -> str:
    """A console script of this virtualenv (or of PATH)."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed: run scripts/setup.sh (requirements-dev.txt)")
    return found


def _spawn(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, IO[bytes]]:
    """A server process and the temporary file its output goes to. Not a pipe: one that nobody reads
    fills up after a few hundred logged requests, and the server then blocks on its next log line."""
    log = tempfile.TemporaryFile()
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env), log


def _wait_listening(process: subprocess.Popen, log: IO[bytes], port: int, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{what} exited at start: {log.read().decode(errors='replace')[-2000:]}")
        if _listening(port):
            return
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{what} did not start listening in time")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


# ------------------------------------------------------------------ S3 (moto)


@dataclass
class MotoServer:
    """A moto S3/IAM server and the admin key created while it was still open."""

    url: str
    access_key_id: str
    secret_access_key: str
    region: str = TEST_REGION
    process: subprocess.Popen | None = None  # None when started elsewhere (CI)
    min_part_bytes: int = S3_MIN_PART_BYTES  # the server refuses a smaller part but the last

    def client(
        self, service: str = "s3", *, access_key_id: str | None = None, secret_access_key: str | None = None
    ) -> Any:
        """A boto3 client of this server, with the admin key unless another is given."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}),
        )

    def create_user(self, name: str, actions: list[str], bucket: str) -> dict[str, str]:
        """An IAM user allowed `actions` on `bucket` and its objects; returns its new access key."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": actions,
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


def start_moto(timeout: float = 30, min_part_bytes: int = S3_MIN_PART_BYTES) -> MotoServer:
    """moto_server on a free port with IAM enforcement after BOOTSTRAP_REQUESTS requests; bootstraps an admin.
    It refuses a multipart upload's part below `min_part_bytes` but the last (AWS's 5 MiB unless told)."""
    import boto3

    port = free_port()
    env = {
        **os.environ,
        "INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_REQUESTS),
        "S3_UPLOAD_PART_MIN_SIZE": str(min_part_bytes),
        # moto sizes its in-memory object buffer from the minimum: keep AWS's, whatever the minimum.
        "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(S3_MIN_PART_BYTES - 1024),
    }
    process, log = _spawn([_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)], env)
    try:
        _wait_listening(process, log, port, "moto_server", timeout)
        url = f"http://127.0.0.1:{port}"
        # Any key passes while the server is still open; exactly BOOTSTRAP_REQUESTS requests, no retries.
        from botocore.config import Config

        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name=TEST_REGION,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
            config=Config(retries={"max_attempts": 1}),
        )
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(ADMIN_POLICY))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
    except BaseException:
        _stop(process)
        raise
    return MotoServer(url, key["AccessKeyId"], key["SecretAccessKey"], process=process, min_part_bytes=min_part_bytes)


# ------------------------------------------------------------------ GCS (gcp-storage-emulator)


@dataclass
class GcsEmulator:
    url: str
    process: subprocess.Popen | None = None

    def client(self, project: str = "local") -> Any:
        """An unauthenticated client of the emulator (for test setup: buckets, listings, downloads)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": self.url}
        )

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


def start_gcs_emulator(timeout: float = 30) -> GcsEmulator:
    port = free_port()
    process, log = _spawn(
        [_binary("gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        os.environ.copy(),
    )
    _wait_listening(process, log, port, "gcp-storage-emulator", timeout)
    return GcsEmulator(f"http://127.0.0.1:{port}", process)


@dataclass
class TokenEndpoint(StandIn):
    """A loopback OAuth token endpoint: `/token` grants, `/refuse` answers 400 invalid_grant, `/busy` 503.

    It checks nothing about the assertion beyond its presence (the emulator ignores tokens anyway);
    what matters is that the client's real service-account flow runs and can be refused.
    """

    granted: list[str] = field(default_factory=list)  # the access tokens handed out
    requests: list[str] = field(default_factory=list)  # paths asked

    def start(self) -> TokenEndpoint:
        endpoint = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                form = self._form()
                endpoint.requests.append(self.path)
                if self.path == "/refuse":
                    return self._json(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
                if self.path == "/busy":
                    return self._json(503, {"error": "unavailable"})
                if "assertion" not in form or form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                    return self._json(400, {"error": "invalid_request"})
                token = f"local-token-{len(endpoint.granted)}-{os.urandom(8).hex()}"
                endpoint.granted.append(token)
                self._json(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

        self._server = serve(Handler, "token-endpoint")
        return self


@cache
def _private_key_pem() -> str:
    """One RSA key per process: generating one takes a while, and every test account may share it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_key(token_uri: str, name: str = "exporter", project: str = "local-project") -> dict[str, str]:
    """A service-account key file as Google issues it, with a real RSA private key and our token_uri."""
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": os.urandom(20).hex(),
        "private_key": _private_key_pem(),
        "client_email": f"{name}@{project}.iam.gserviceaccount.com",
        "client_id": str(int.from_bytes(os.urandom(8), "big")),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


# ------------------------------------------------------------------ CI entry point


def settings_lines(moto: MotoServer, gcs: GcsEmulator) -> list[str]:
    """What the test fixtures read to use servers started elsewhere."""
    return [
        f"EXPORT_TEST_S3={moto.url}",
        f"EXPORT_TEST_S3_ACCESS_KEY_ID={moto.access_key_id}",
        f"EXPORT_TEST_S3_SECRET_ACCESS_KEY={moto.secret_access_key}",
        f"EXPORT_TEST_S3_MIN_PART_BYTES={moto.min_part_bytes}",
        f"EXPORT_TEST_GCS={gcs.url}",
    ]


def main() -> int:
    """Start moto (with the suite's minimum part size) and the GCS emulator, print their settings, run until
    stopped."""
    import signal

    moto = start_moto(min_part_bytes=TEST_S3_MIN_PART_BYTES)
    try:
        gcs = start_gcs_emulator()
    except BaseException:
        moto.stop()
        raise
    print("\n".join(settings_lines(moto, gcs)), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    processes = [p for p in (moto.process, gcs.process) if p is not None]
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        moto.stop()
        gcs.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
