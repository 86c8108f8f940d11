"""podman with ember-oci as its runtime (podman 4.3 + conmon 2.1 drive it exactly as they drive
crun): exit status with stdout and stderr apart, stdin's end, 127/126, the process settings,
stop and kill, pause and resume with ps/inspect states, a terminal under script(1), a guest
OOM kill, an image made by `podman import` and a bare --rootfs. crun runs every script first
as the oracle; ember-oci must give the same answers, but for one intended difference: the
workload is not the guest's PID 1, so `podman stop` ends it with SIGTERM (143) where crun's
PID-1 sleep ignores it and is killed after the timeout (137)."""
import shutil
import subprocess

import pytest

from oci_env import EMBER_OCI, Podman, busybox_rootfs, leftovers, need, tmpdir, wait_for

RUNTIMES = {"crun": "/usr/bin/crun", "ember": str(EMBER_OCI)}
IMAGE = "localhost/ember-bb:1"
oracle = {}  # what crun answered, per scenario: ember must answer the same


@pytest.fixture(scope="module")
def pod():
    need("podman", "conmon", "crun")
    base = tmpdir("oci-podman-")
    p = Podman(base)
    p.rootfs = busybox_rootfs(base / "rootfs")
    tar = subprocess.run(["tar", "-C", str(p.rootfs), "-cf", "-", "."], capture_output=True,
                         check=True).stdout
    r = p.run("crun", "import", "-", IMAGE, input=tar)
    assert r.code == 0, r
    yield p
    for rt in RUNTIMES.values():
        p.cleanup(rt)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["crun", "ember"])
def rt(request, images):
    return request.param


def same_as_oracle(rt, key, value):
    """crun's answer is recorded; ember-oci's must be the same."""
    if rt == "crun":
        oracle[key] = value
    elif key in oracle:
        assert value == oracle[key], f"{key}: ember-oci gave {value!r}, crun {oracle[key]!r}"


def podrun(pod, rt, opts, image, *cmd, **kw):
    """podman run --rm: opts before the image; image None for the bare rootfs (podman's
    --rootfs is a flag: the directory takes the image's place)."""
    where = ["--rootfs", pod.rootfs] if image is None else [image]
    return pod.run(RUNTIMES[rt], "run", "--rm", "--network", "none", *opts, *where, *cmd, **kw)


def test_exit_status_and_streams(pod, rt):
    for image in (None, IMAGE):
        r = podrun(pod, rt, [], image, "/bin/sh", "-c", "echo out; echo err >&2; exit 7")
        assert (r.code, r.out, r.err) == (7, "out\n", "err\n"), (image, r)


def test_stdin_reaches_its_end(pod, rt):
    r = podrun(pod, rt, ["-i"], None, "/bin/cat", input=b"hi\n", timeout=120)
    assert (r.code, r.out) == (0, "hi\n"), r


def test_not_found_127_not_executable_126(pod, rt):
    r = podrun(pod, rt, [], None, "/nonexistent")
    assert r.code == 127, r
    r = podrun(pod, rt, [], None, "nosuchcommand")
    assert r.code == 127 and "not found in $PATH" in r.err, r
    r = podrun(pod, rt, [], None, "/notexec")
    assert r.code == 126 and "permission denied" in r.err.lower(), r
    if rt == "ember":
        assert leftovers()[0] == [], leftovers()


def test_process_settings(pod, rt):
    script = ("id -u; id -g; id -G; pwd; echo $FOO; echo $HOME; hostname; cat /etc/hostname; echo; "
              "ulimit -n; umask; touch /newfile 2>/dev/null && echo rw || echo ro; "
              "touch /tmp/x && echo tmp-rw")
    r = podrun(pod, rt, ["--user", "1000:1000", "--group-add", "5", "-w", "/tmp", "-e",
                         "FOO=bar baz", "--hostname", "h1", "--ulimit", "nofile=100:200",
                         "--read-only"], None, "/bin/sh", "-c", script)
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[:7] == ["1000", "1000", "1000 5", "/tmp", "bar baz", lines[5], "h1"], r
    assert lines[7:] == ["h1", "100", "0022", "ro", "tmp-rw"], r
    same_as_oracle(rt, "settings", r.out)


def inspect(pod, rt, cid, fmt):
    return pod.run(RUNTIMES[rt], "inspect", "-f", fmt, cid).out.strip()


def test_stop_gives_143_kill_gives_137(pod, rt):
    r = pod.run(RUNTIMES[rt], "run", "-d", "--network", "none", "--rootfs", pod.rootfs,
                "/bin/sleep", "600")
    assert r.code == 0, r
    cid = r.out.strip()
    assert pod.run(RUNTIMES[rt], "stop", "-t", "3", cid, timeout=120).code == 0
    # the one intended difference: crun's sleep is PID 1 and ignores SIGTERM
    assert inspect(pod, rt, cid, "{{.State.ExitCode}}") == ("137" if rt == "crun" else "143")
    pod.run(RUNTIMES[rt], "rm", cid)
    r = pod.run(RUNTIMES[rt], "run", "-d", "--network", "none", "--rootfs", pod.rootfs,
                "/bin/sleep", "600")
    cid = r.out.strip()
    assert pod.run(RUNTIMES[rt], "kill", "-s", "KILL", cid).code == 0
    r = pod.run(RUNTIMES[rt], "wait", cid, timeout=120)
    assert r.out.strip() == "137", r
    pod.run(RUNTIMES[rt], "rm", cid)


def test_pause_resume_and_states(pod, rt):
    r = pod.run(RUNTIMES[rt], "run", "-d", "--network", "none", "--rootfs", pod.rootfs,
                "/bin/sleep", "600")
    assert r.code == 0, r
    cid = r.out.strip()
    seen = [inspect(pod, rt, cid, "{{.State.Status}}")]
    assert pod.run(RUNTIMES[rt], "pause", cid).code == 0
    seen.append(inspect(pod, rt, cid, "{{.State.Status}}"))
    ps = pod.run(RUNTIMES[rt], "ps", "-q", "--filter", "status=paused").out
    seen.append(ps.strip()[:12] == cid[:12])
    assert pod.run(RUNTIMES[rt], "unpause", cid).code == 0
    seen.append(inspect(pod, rt, cid, "{{.State.Status}}"))
    seen.append(pod.run(RUNTIMES[rt], "ps", "-q").out.strip()[:12] == cid[:12])
    assert pod.run(RUNTIMES[rt], "kill", cid).code == 0
    pod.run(RUNTIMES[rt], "wait", cid, timeout=120)
    seen.append(inspect(pod, rt, cid, "{{.State.Status}}"))
    assert seen == ["running", "paused", True, "running", True, "exited"], seen
    pod.run(RUNTIMES[rt], "rm", cid)


def test_terminal_under_script(pod, rt):
    cmd = " ".join(pod.cmd(RUNTIMES[rt], "run", "--rm", "-t", "--network", "none", "--rootfs",
                           pod.rootfs, "/bin/sh", "-c", "'tty; test -t 0 && echo is-a-tty'"))
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], stdin=subprocess.DEVNULL,
                       capture_output=True, env=pod.env, timeout=180)
    out = r.stdout.decode(errors="replace").replace("\r", "")
    assert r.returncode == 0 and "/dev/pts/" in out and "is-a-tty" in out, (r, out)


def test_guest_oom_kill_is_reported(pod, rt):
    """tail holding one 300 MiB line: over crun's 192 MiB cgroup limit, and over ember-oci's
    guest (192 MiB less the VMM's 64 MiB); the OOM killer kills tail, sh exits 137. ember-oci also leaves the bundle's
    "oom" file, so podman says OOMKilled; conmon does not see crun's cgroup OOM kill in the
    test host (its cgroup v2 check finds no event there), so crun's answer is not compared."""
    r = pod.run(RUNTIMES[rt], "run", "--network", "none", "--memory", "192m", "--rootfs",
                pod.rootfs, "/bin/sh", "-c", "head -c 300m /dev/zero | tail", timeout=240)
    cid = pod.run(RUNTIMES[rt], "ps", "-alq").out.strip()
    assert r.code == 137, r
    if rt == "ember":
        assert inspect(pod, rt, cid, "{{.State.OOMKilled}}") == "true"
    pod.run(RUNTIMES[rt], "rm", cid)


def test_bind_mounted_directory_is_refused_by_name(pod, images):
    r = podrun(pod, "ember", ["-v", "/etc:/hostetc"], None, "/bin/true")
    assert r.code != 0 and "/etc" in r.err and "not supported" in r.err, r
    assert wait_for(lambda: leftovers() == ([], []), 30), leftovers()
