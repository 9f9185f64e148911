"""A fork server for crash trials: imports torch, transformers and optune once; each command runs in a forked
child, so a kill trial costs the command's own work (a second or two) instead of the imports (~25 s on the
loaded 2-core machine). `Zygote` starts and drives it (`python -m tests.e2e.forkserver` is the server);
`install_fault` makes a child's file system fail (disk full, read-only) from a chosen write on.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Zygote:
    """A fork server: `spawn(argv, log)` runs `optune <argv>` in a forked child and returns its PID."""

    def __init__(self, env: dict | None = None):
        env = dict(env or os.environ)
        env.update(PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        # its own stderr (import warnings; native libraries' noise at exit) goes to a file, read if it fails
        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.forkserver"], cwd=REPO, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, bufsize=0)
        self.fd = self.proc.stdout.fileno()
        self.buffer = b""
        if self._message(timeout=600) != {"ready": True}:
            self.errors.seek(0)
            raise RuntimeError(f"the fork server did not start: {self.errors.read()[-3000:].decode()}")

    def _message(self, timeout: float | None) -> dict | None:
        """The next line the server wrote, or None if none came within timeout (unbuffered: select is exact)."""
        while b"\n" not in self.buffer:
            if not select.select([self.fd], [], [], timeout)[0]:
                return None
            chunk = os.read(self.fd, 4096)
            if not chunk:
                self.errors.seek(0)
                raise RuntimeError(f"the fork server died: {self.errors.read()[-3000:].decode()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def spawn(self, argv: list[str], log: Path, fault: dict | None = None) -> int:
        """Start `optune <argv>` (stdout to log, stderr to log + ".err"); `fault`: see `install_fault`."""
        self.proc.stdin.write((json.dumps({"argv": argv, "log": str(log), "fault": fault}) + "\n").encode())
        self.proc.stdin.flush()
        self.rc = None
        return self._message(None)["pid"]

    def finished(self, timeout: float = 0.0) -> bool:
        """Whether the running child has ended (its status is then kept for `wait`)."""
        if self.rc is None:
            message = self._message(timeout)
            self.rc = None if message is None else message["rc"]
        return self.rc is not None

    def wait(self) -> int:
        """The exit status of the last spawned child (negative: killed by that signal)."""
        self.finished(None)
        rc, self.rc = self.rc, None
        return rc

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.errors.close()


PRELOAD = ("torch", "transformers.models.bert.modeling_bert", "transformers.models.llama.modeling_llama",
           "transformers.models.auto.tokenization_auto", "peft", "safetensors.torch", "optune.cli.run",
           "optune.cli.dpo", "optune.cli.reward", "optune.api", "optune.runner.prepare", "optune.runner.context",
           "optune.runner.loop",
           "optune.generation", "optune.models.tiny", "optune.data.prompts", "optune.data.preferences",
           "optune.pairs.offline", "optune.rewardmodel.train", "optune.tasks.toy", "optune.runner.tracking")
"""What commands import on the way (found by diffing sys.modules around a tiny run): imported once here."""


def serve() -> None:
    """The fork server's loop (runs in its own process; see Zygote)."""
    import gc
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # optional (peft): the child imports it if it needs it
    import optune.cli

    gc.freeze()  # the preloaded objects are never collected: each child's gc.collect() skips them
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(optune.cli.main, command["argv"], command["log"], command.get("fault"))
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)


def _child(main, argv: list[str], log: str, fault: dict | None) -> None:
    code = 1
    try:
        for fd, path in ((1, log), (2, log + ".err")):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), fd)
        if fault:
            install_fault(**fault)
        code = main(argv)
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def install_fault(under: str, errno_name: str, after: int) -> None:
    """Make the file system under `under` fail from its `after`-th fsync on (in this process only).

    ENOSPC (disk full): every fsync from then on fails, as the data no longer fits. EROFS (remounted
    read-only): fsyncs fail too, and so does everything that creates, opens for writing or renames there.
    """
    import builtins
    import errno

    code = getattr(errno, errno_name)
    fsyncs = [0]

    def broken() -> bool:
        return fsyncs[0] >= after

    def inside(path) -> bool:
        try:
            return os.path.abspath(os.fsdecode(path)).startswith(under)
        except TypeError:
            return False

    def fail(path=""):
        raise OSError(code, os.strerror(code), os.fsdecode(path) if path else None)

    real_fsync = os.fsync

    def fsync(fd):
        if inside(os.readlink(f"/proc/self/fd/{fd}")):
            fsyncs[0] += 1
            if broken():
                fail()
        return real_fsync(fd)

    os.fsync = fsync
    if code != errno.EROFS:
        return
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def guard(real, is_write):
        def wrapped(path, *args, **kwargs):
            if broken() and inside(path) and is_write(*args, **kwargs):
                fail(path)
            return real(path, *args, **kwargs)
        return wrapped

    os.open = guard(os.open, lambda flags, *a, **k: bool(flags & writes))
    os.mkdir = guard(os.mkdir, lambda *a, **k: True)
    os.replace = guard(os.replace, lambda *a, **k: True)
    os.rename = guard(os.rename, lambda *a, **k: True)
    builtins.open = guard(builtins.open, lambda mode="r", *a, **k: any(c in mode for c in "wax+"))


if __name__ == "__main__":
    serve()
