"""The trusted bootstrap that runs first inside every sandbox (see :mod:`eval._sandbox`).

It is Python source run as ``python -I -S -c BOOTSTRAP PAYLOAD_FD REPORT_FD``: it reads its
orders from the payload pipe (and closes it), sets the hard resource limits, then either runs a
script or loads a program and runs checks against it, writing the token-prefixed report last.
"""

from __future__ import annotations

__all__ = ["BOOTSTRAP"]

# Everything the report depends on is
# bound to locals before the program runs, so patching os, builtins or json cannot change it.
BOOTSTRAP = r"""
import sys
def _bootstrap():
    import os, resource, signal, json, traceback
    payload_fd, report_fd = int(sys.argv[1]), int(sys.argv[2])
    chunks = []
    while True:
        chunk = os.read(payload_fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(payload_fd)
    spec = json.loads(b"".join(chunks))
    del chunks
    for name, value in spec["rlimits"]:
        resource.setrlimit(getattr(resource, name), (value, value))
    if spec["mode"] == "script":
        os.close(report_fd)
        code = compile(spec["code"], "main.py", "exec")
        del spec
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
        return
    token = spec["token"]
    program, checks = spec["program"], spec["checks"]
    load_s, stop_after = spec["load_seconds"], spec["stop_after_timeouts"]
    del spec
    _write, _exit, _getcwd, _fsdecode = os.write, os._exit, os.getcwd, os.fsdecode
    _type, _repr, _str, _len, _isinstance = type, repr, str, len, isinstance
    _setitimer, _real = signal.setitimer, signal.ITIMER_REAL
    _format = traceback.format_exception_only

    try:  # no other process (a forked child, an exec'd tool) may read this one's memory
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:
        pass
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]

    denied = {
        "sys._current_frames", "sys.settrace", "sys.setprofile", "sys.addaudithook", "gc.get_objects",
        "gc.get_referrers", "gc.get_referents", "os.symlink", "os.link", "ctypes.dlopen", "ctypes.dlsym",
        "ctypes.cdata", "ctypes.addressof", "ctypes.string_at", "ctypes.wstring_at",
    }
    frames = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"}

    def _under_proc(path):
        if _isinstance(path, int):
            return False
        path = _fsdecode(path)
        if not path.startswith("/"):
            path = _getcwd() + "/" + path
        parts = path.split("/")
        return "proc" in parts or any(
            parts[i] == "dev" and parts[i + 1] in ("fd", "stdin", "stdout", "stderr") for i in range(_len(parts) - 1)
        )

    def _audit(event, args):
        if event == "sys._getframe":
            raise ValueError("frame introspection is disabled in the sandbox")
        if event == "object.__getattr__" and args[1] in frames:
            raise AttributeError("frame introspection is disabled in the sandbox")
        if event in denied:
            raise PermissionError(event + " is disabled in the sandbox")
        if event == "import" and args[0].split(".")[0] in ("ctypes", "_ctypes"):
            raise ImportError("ctypes is disabled in the sandbox")
        if event in ("open", "os.chdir", "os.listdir", "os.scandir") and args and _under_proc(args[0]):
            raise PermissionError("/proc is closed in the sandbox")

    sys.addaudithook(_audit)

    class _Alarm(BaseException):
        pass

    def _on_alarm(signum, frame):
        raise _Alarm

    signal.signal(signal.SIGALRM, _on_alarm)

    def _describe(exc):
        try:
            return "".join(_format(_type(exc), exc)).strip()[-400:]
        except BaseException:
            return _type(exc).__name__

    scope = {"__name__": "__sandbox__"}
    loaded, detail, outcomes, slow = "1", "", [], 0
    try:
        try:
            _setitimer(_real, load_s)
            exec(compile(program, "program.py", "exec"), scope)
        finally:
            _setitimer(_real, 0)
    except BaseException as exc:
        loaded, detail = "0", ("load: timed out" if _isinstance(exc, _Alarm) else _describe(exc))
    for source, seconds, mode, always in checks if loaded == "1" else ():
        if stop_after is not None and slow >= stop_after and not always:
            outcomes.append("T")
            continue
        try:
            try:
                _setitimer(_real, seconds)
                if mode == "eval":
                    outcome = "=" + _str(_repr(eval(source, dict(scope))))[:2000]
                else:
                    exec(source, dict(scope))
                    outcome = "P"
            finally:
                _setitimer(_real, 0)
        except _Alarm:
            outcome, slow = "T", slow + 1
        except AssertionError as exc:
            outcome, detail = "F", detail or _describe(exc)
        except BaseException as exc:
            outcome, detail = "E" + _str(_type(exc).__name__), detail or _describe(exc)
        outcomes.append(_str(outcome))
    fields = [loaded, _str(detail), *outcomes]
    report = token + "\n" + "".join(_str(_len(f)) + ":" + f for f in fields)
    data = report.encode("utf-8", "surrogatepass")
    while data:
        data = data[_write(report_fd, data):]
    _exit(0)
_bootstrap()
"""
