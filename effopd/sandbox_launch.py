"""The sandbox's launcher: sets up one program's confinement, then ``exec``s it.

Run by :mod:`effopd.code_grading` as ``python -I -S sandbox_launch.py JOB.json``, either
as process 1 of fresh namespaces (``unshare --net --pid --mount --ipc --uts``; it then
forks the program and waits for it as the namespace's init) or, in the rlimits-only
fallback, directly. Standard library only (it starts in about 10 ms,
without ``site``). In order:

1. read the job (a JSON file written by the grader);
2. with ``mounts`` (namespace mode): make every mount private, make the whole tree
   read-only (``mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)``), mount small fresh
   tmpfs's on ``/tmp`` and ``/dev/shm``, and write the job's files into
   ``/tmp/sandbox``, the program's empty working directory;
3. set the resource limits (CPU, address space, file size, processes, open files,
   no core files);
4. drop to the job's unprivileged uid (when the grader runs as root), forbid new
   privileges (``PR_SET_NO_NEW_PRIVS``), and ask for SIGKILL when the parent dies;
5. point fd 0 at the job's stdin file (or ``/dev/null``) and fds 3, 4, ... at the job's
   pipes (the stdio harness's verdict pipe; the assert server's request, reply and
   control pipes), closing every other descriptor the launcher was given;
6. ``execve`` the program with the job's reduced environment.

Any failure before the ``exec`` exits with :data:`LAUNCH_FAILED` and a line on stderr
that starts with ``sandbox:``; the grader records it as ``sandbox_error``.
"""

import ctypes
import fcntl
import json
import os
import resource
import struct
import sys

LAUNCH_FAILED = 121
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 2, 4, 1 << 14, 1 << 18
_SYS_MOUNT_SETATTR, _AT_FDCWD, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_LIBC = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target: str, fstype, flags: int, data=None) -> None:
    _check(_LIBC.mount(source and source.encode(), target.encode(),
                       fstype and fstype.encode(), ctypes.c_ulong(flags),
                       data and data.encode()), f"mount {target}")


def _confine_filesystem(job: dict) -> str:
    """Step 2: read-only tree, fresh tmpfs's, the job's files in /tmp/sandbox."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    attr = ctypes.create_string_buffer(struct.pack("QQQQ", _MOUNT_ATTR_RDONLY, 0, 0, 0))
    _check(_LIBC.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE, attr, 32),
           "mount_setattr / read-only")
    for path in ("/tmp", "/dev/shm"):
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV,
                   f"size={job['tmpfs_mb']}m,mode=1777")
    workdir = "/tmp/sandbox"
    os.mkdir(workdir, 0o700)
    return workdir


def _write_files(workdir: str, files: dict, uid) -> None:
    for name, text in files.items():
        path = os.path.join(workdir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        if uid is not None:
            os.chown(path, uid, uid)
    if uid is not None:
        os.chown(workdir, uid, uid)


def _set_limits(job: dict) -> None:
    """Step 3. Soft and hard limits are equal, so the program cannot raise them; but the
    CPU's hard limit is a second later, so the soft one's SIGXCPU comes first (at the
    hard limit the kernel sends SIGKILL)."""
    resource.setrlimit(resource.RLIMIT_CPU, (job["cpu_s"], job["cpu_s"] + 1))
    limits = {resource.RLIMIT_AS: job["memory_mb"] << 20,
              resource.RLIMIT_FSIZE: job["file_size_mb"] << 20,
              resource.RLIMIT_NPROC: job["nproc"],
              resource.RLIMIT_NOFILE: job["max_open_files"],
              resource.RLIMIT_CORE: 0}
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))


def _drop_privileges(uid) -> None:
    """Step 4: the uid (and gid) the grader chose for this slot; no new privileges."""
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    _check(_LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl NO_NEW_PRIVS")
    _check(_LIBC.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0), "prctl PDEATHSIG")


def _wait_as_init(child: int) -> None:
    """Process 1 of the pid namespace: reap every orphan until the program ends, then
    exit with its code, or 128 + N when signal N killed it. (The program must not be
    process 1: the kernel drops the signals process 1 has no handler for, SIGXCPU too.)
    Exiting kills whatever is left in the namespace."""
    while True:
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def _place_pipes(fds: list) -> None:
    """Step 5: the job's pipes at 3, 4, ... (first copied above the targets, so that a
    pipe already at a target number is not overwritten), every other copy closed."""
    first_free = 3 + len(fds)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, first_free) for fd in fds]
    for target, fd in enumerate(high, start=3):
        os.dup2(fd, target)
    for fd in set(fds) | set(high):
        if fd >= first_free:
            os.close(fd)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    uid = job["uid"]
    if job["mounts"]:
        workdir = _confine_filesystem(job)
        _write_files(workdir, job["files"], uid)
        child = os.fork()
        if child:
            _wait_as_init(child)
    else:
        workdir = job["workdir"]
        _write_files(workdir, {}, uid)
    os.chdir(workdir)
    _set_limits(job)
    _drop_privileges(uid)
    stdin = os.open(job["stdin"] or os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    os.close(stdin)
    _place_pipes(job["fds"])
    os.execve(job["argv"][0], job["argv"], job["env"])


if __name__ == "__main__":
    try:
        main()
    except BaseException as err:  # anything before exec is the sandbox's fault
        sys.stderr.write(f"sandbox: {type(err).__name__}: {err}\n")
        sys.stderr.flush()
        os._exit(LAUNCH_FAILED)
