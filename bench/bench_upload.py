"""Upload benchmark: recdock's tus uploader against ``curl -T`` to a plain PUT endpoint.

    .venv/bin/python bench/bench_upload.py [--size-mib 512] [--reps 3] [--workdir DIR]

One random file of ``--size-mib`` MiB is uploaded, in the same run and on loopback:

    recdock tus     sync.upload.tus.TusUploader (64 MiB chunks) to ``recdock-central``
                    (a subprocess):
                    every chunk fsynced before its offset is acknowledged, the stored file
                    re-read and hashed, moved read-only into objects/, receipt fetched.
                    Timed to the receipt, and to the last acknowledged byte.
    curl PUT        ``curl -T FILE URL`` to a minimal PUT server (this script with --serve-put,
                    a subprocess): streams the body to a file, fsyncs once, answers 201.

The order alternates between repetitions (ABBA); each upload starts with the source file dropped
from the page cache (posix_fadvise DONTNEED) and a fresh central data folder (so the repeated
content is not answered from the existing receipt). The median of each is reported, and the ratio
recdock / curl (target >= 0.9 to the last acknowledged byte).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1024 * 1024
TARGET = 0.9


# -- the plain PUT endpoint (run as a subprocess with --serve-put) -----------------------------


class _PutHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    target_dir: Path

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        left = int(self.headers["Content-Length"])
        dest = self.target_dir / f"put-{secrets.token_hex(8)}"
        buf = bytearray(MiB)
        view = memoryview(buf)
        with open(dest, "wb") as f:
            while left:
                n = self.rfile.readinto(view[: min(left, MiB)])
                if not n:
                    break
                f.write(view[:n])
                left -= n
            f.flush()
            os.fsync(f.fileno())
        self.send_response(201 if not left else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def serve_put(directory: Path, port: int) -> None:
    _PutHandler.target_dir = directory
    http.server.ThreadingHTTPServer(("127.0.0.1", port), _PutHandler).serve_forever()


# -- helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def make_file(path: Path, size: int) -> str:
    import hashlib

    sha = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            sha.update(block)
            f.write(block)
            left -= len(block)
        os.fsync(f.fileno())
    return sha.hexdigest()


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} CPUs, {model}, {platform.platform()}\n{mem}"


@contextlib.contextmanager
def process(args: list[str], port: int):
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the two methods ---------------------------------------------------------------------------


def run_tus(work: Path, path: Path, sha: str, rep: int, token: str, tokens: Path, chunk: int):
    from sync.upload.tus import TusUploader

    data = work / f"central-{rep}"
    port = free_port()
    args = [sys.executable, "-m", "central.command", "--data", str(data), "--tokens", str(tokens)]
    args += ["--port", str(port), "--log-level", "warning"]
    size = path.stat().st_size
    acked = [0.0]

    def progress(offset: int, total: int) -> None:
        if offset == total:
            acked[0] = time.perf_counter()

    with process(args, port):
        drop_cache(path)
        with TusUploader(f"http://127.0.0.1:{port}/files/", token, chunk_size=chunk) as up:
            start = time.perf_counter()
            receipt = up.upload(path, sha256=sha, on_progress=progress)
            end = time.perf_counter()
    if not receipt.verified or receipt.sha256 != sha:
        raise RuntimeError(f"bad receipt {receipt}")
    shutil.rmtree(data, onerror=_make_writable)
    return size / (acked[0] - start) / MiB, size / (end - start) / MiB


def run_curl(work: Path, path: Path, port: int) -> float:
    drop_cache(path)
    size = path.stat().st_size
    start = time.perf_counter()
    subprocess.run(
        ["curl", "-sS", "--fail", "-H", "Expect:", "-T", str(path), "-o", os.devnull,
         f"http://127.0.0.1:{port}/upload"],
        check=True,
    )  # fmt: skip
    end = time.perf_counter()
    for p in work.glob("put/put-*"):
        p.unlink()
    return size / (end - start) / MiB


def _make_writable(func, path, _exc) -> None:
    os.chmod(path, 0o644)
    os.chmod(os.path.dirname(path), 0o755)
    func(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512, help="file size in MiB")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each method")
    parser.add_argument(
        "--chunk-mib", type=int, default=64, help="tus chunk (PATCH) size in MiB (the default)"
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--serve-put", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.serve_put:
        serve_put(opts.serve_put, opts.port)
        return

    print(machine())
    work = Path(tempfile.mkdtemp(prefix="recdock-bench-upload-", dir=opts.workdir))
    try:
        token = secrets.token_urlsafe(24)
        tokens = work / "tokens.toml"
        tokens.write_text(f'[stations]\n"BENCH" = "{token}"\n')
        source = work / "source.bin"
        size = opts.size_mib * MiB
        sha = make_file(source, size)
        (work / "put").mkdir()
        put_port = free_port()
        put_args = [sys.executable, __file__, "--serve-put", str(work / "put")]
        put_args += ["--port", str(put_port)]
        tus_acked, tus_receipt, curl = [], [], []
        print(
            f"\n{opts.size_mib} MiB file, {opts.chunk_mib} MiB tus chunks, {opts.reps} "
            f"repetitions, loopback, work in {work}"
        )
        with process(put_args, put_port):
            for rep in range(opts.reps):
                order = ("tus", "curl") if rep % 2 == 0 else ("curl", "tus")
                for method in order:
                    if method == "tus":
                        a, r = run_tus(work, source, sha, rep, token, tokens, opts.chunk_mib * MiB)
                        tus_acked.append(a)
                        tus_receipt.append(r)
                        print(f"  rep {rep} recdock tus  {a:8.1f} MiB/s to last ack, "
                              f"{r:8.1f} MiB/s to receipt")  # fmt: skip
                    else:
                        c = run_curl(work, source, put_port)
                        curl.append(c)
                        print(f"  rep {rep} curl -T PUT  {c:8.1f} MiB/s")
        med_a, med_r, med_c = (statistics.median(x) for x in (tus_acked, tus_receipt, curl))
        print("\nmedians:")
        print(f"  curl -T to plain PUT (fsync once)           {med_c:8.1f} MiB/s")
        print(f"  recdock tus, to the last acknowledged byte  {med_a:8.1f} MiB/s")
        print(f"  recdock tus, to the verified receipt        {med_r:8.1f} MiB/s")
        verdict = "met" if med_a / med_c >= TARGET else "NOT met"
        print(f"ratio recdock/curl: {med_a / med_c:.2f}x to last ack ({verdict}: >= {TARGET}x), "
              f"{med_r / med_c:.2f}x to receipt")  # fmt: skip
        # each repetition runs the two back to back: their ratio shares the machine's mood
        paired = sorted(a / c for a, c in zip(tus_acked, curl, strict=True))
        print(
            f"paired ratios (same repetition) to last ack: {' '.join(f'{x:.2f}' for x in paired)}"
            f"; median {statistics.median(paired):.2f}x"
        )
    finally:
        shutil.rmtree(work, onerror=_make_writable)


if __name__ == "__main__":
    main()
