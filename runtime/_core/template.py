"""The worker template: a warm process that forks workers on request.

It imports everything a worker needs once (numpy, cloudpickle, pyzmq, the worker loop) and
then forks a new worker in a few milliseconds. It holds no ZeroMQ context, so forking is
safe. It speaks a line protocol with its node manager over its stdin/stdout pipes::

    node manager -> template   fork <worker id hex>
    template -> node manager   started <worker id hex> <pid>
                               exited <pid> <exit status; negative = killed by signal>

When stdin closes (the node manager is gone) it kills its workers and exits.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys

from . import lifecycle


def _run_child(worker_id: bytes, options: dict, log_fd: int, template_pid: int) -> None:
    # A template that died just before this request took effect would leave a worker nobody knows.
    lifecycle.die_with_parent(signal.SIGKILL, expected_parent=template_pid)
    signal.set_wakeup_fd(-1)
    for fd in (options["wakeup_fd"], options["wakeup_read_fd"]):
        os.close(fd)
    # The template's stdin and stdout are its pipes to the node manager: a worker reads
    # nothing and writes its native-level output to its log file, on fds 0, 1 and 2 as ever
    # (fds 0-2 are replaced, never closed, so no later file can take their numbers).
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    from . import worker

    code = 0
    try:
        worker.main(worker_id, options)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)


def _warm_heavy_imports() -> None:
    """Import what most tasks use, so later forks share it (copy-on-write) and start warm."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        pass


def main(options: dict) -> None:
    lifecycle.die_with_parent(signal.SIGKILL, expected_parent=options["node_manager_pid"])
    lifecycle.set_process_title("shoal::template")
    # Warm the imports every worker needs, so forked workers start instantly. numpy and
    # pyarrow are warmed later, once the first workers are forked, to keep start-up fast.
    import cloudpickle  # noqa: F401
    import msgpack  # noqa: F401
    import zmq  # noqa: F401

    from .. import api  # noqa: F401
    from . import worker  # noqa: F401

    stdin_fd = sys.stdin.fileno()
    stdout = sys.stdout
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_read, False)
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    options.update(wakeup_fd=wakeup_write, wakeup_read_fd=wakeup_read)
    log_dir = os.path.join(options["session_dir"], "logs")
    children: set[int] = set()

    selector = selectors.DefaultSelector()
    selector.register(stdin_fd, selectors.EVENT_READ, "stdin")
    selector.register(wakeup_read, selectors.EVENT_READ, "signal")
    buffered = b""

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            stdout.write(f"exited {pid} {code}\n")
            stdout.flush()

    warm = False
    try:
        while True:
            events = selector.select(None if warm else 0.2)
            if not events and not warm:
                warm = True
                _warm_heavy_imports()
                continue
            for key, _ in events:
                if key.data == "signal":
                    try:
                        os.read(wakeup_read, 4096)
                    except BlockingIOError:
                        pass
                    reap()
                    continue
                chunk = os.read(stdin_fd, 65536)
                if not chunk:
                    return
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    parts = line.decode().split()
                    if parts and parts[0] == "fork":
                        worker_id = bytes.fromhex(parts[1])
                        log_path = os.path.join(log_dir, f"worker-{parts[1][:12]}.log")
                        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                        template_pid = os.getpid()
                        pid = os.fork()
                        if pid == 0:
                            selector.close()
                            _run_child(worker_id, options, log_fd, template_pid)
                        os.close(log_fd)
                        children.add(pid)
                        stdout.write(f"started {parts[1]} {pid}\n")
                        stdout.flush()
                    elif parts and parts[0] == "kill":
                        lifecycle.kill_quietly(int(parts[1]), int(parts[2]) if len(parts) > 2 else signal.SIGKILL)
            reap()
    finally:
        for pid in list(children):
            lifecycle.kill_quietly(pid, signal.SIGKILL)
        for pid in list(children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


class TemplateHandle:
    """The node manager's handle on its template: a pid and two pipe ends."""

    def __init__(self, pid: int, write_fd: int, read_fd: int):
        self.pid = pid
        self.write_fd = write_fd
        self.read_fd = read_fd
        os.set_blocking(read_fd, False)

    @classmethod
    def fork(cls, options: dict, log_path: str) -> TemplateHandle:
        """Fork the template from a process that has not imported anything heavy yet."""
        to_child_read, to_child_write = os.pipe()
        from_child_read, from_child_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(to_child_read, 0)
                os.dup2(from_child_write, 1)
                log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(log_fd, 2)
                for fd in (to_child_read, to_child_write, from_child_read, from_child_write, log_fd):
                    os.close(fd)
                sys.stdin = os.fdopen(0, "r")
                sys.stdout = os.fdopen(1, "w")
                sys.stderr = os.fdopen(2, "w")
                os.environ.update(options.get("env_vars") or {})
                main(options)
            finally:
                os._exit(0)
        os.close(to_child_read)
        os.close(from_child_write)
        return cls(pid, to_child_write, from_child_read)

    @classmethod
    def spawn(cls, options: dict, log_path: str) -> TemplateHandle:
        """Start a fresh template interpreter (used to replace one that died)."""
        import json
        import subprocess

        env = dict(os.environ)
        env.update(options.get("env_vars") or {})
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "shoal._core.template", json.dumps(options)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                close_fds=True,
                umask=options.get("user_umask", -1),
            )
        finally:
            os.close(log)
        assert process.stdin is not None and process.stdout is not None  # both are pipes
        handle = cls(process.pid, os.dup(process.stdin.fileno()), os.dup(process.stdout.fileno()))
        process.stdin.close()
        process.stdout.close()
        process.returncode = 0  # reaped through the handle, not the Popen object
        return handle

    def send(self, text: str) -> bool:
        try:
            os.write(self.write_fd, text.encode())
            return True
        except OSError:
            return False

    def read(self) -> bytes | None:
        """Available output; b"" at end of file, None when nothing is ready."""
        try:
            return os.read(self.read_fd, 65536)
        except BlockingIOError:
            return None

    def close(self, timeout_s: float) -> None:
        """Close its input (it then kills its workers and exits) and reap it."""
        import time

        try:
            os.close(self.write_fd)
        except OSError:
            pass
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                break
            if time.monotonic() > deadline:
                lifecycle.kill_quietly(self.pid)
                try:
                    os.waitpid(self.pid, 0)
                except ChildProcessError:
                    pass
                break
            time.sleep(0.005)
        try:
            os.close(self.read_fd)
        except OSError:
            pass


if __name__ == "__main__":
    import json

    main(json.loads(sys.argv[1]))
