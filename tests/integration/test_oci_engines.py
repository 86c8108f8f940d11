"""ember-oci behind containerd and Docker: `ctr run --runtime io.containerd.runc.v2
--runc-binary ember-oci` (the shim path Docker and Kubernetes' RuntimeClass take), and dockerd
with ember-oci in its daemon.json. runc runs every script first as the oracle; ember-oci must
give the same answers (but `docker stop`: 143 for ember-oci, whose workload is not the guest's
PID 1, 137 for runc's PID-1 sleep, which ignores SIGTERM)."""
import shutil
import subprocess

import pytest

from oci_env import EMBER_OCI, Containerd, Dockerd, busybox_rootfs, leftovers, need, tmpdir, \
    wait_for

CTR_RUNTIMES = {"runc": "/usr/bin/runc", "ember": str(EMBER_OCI)}
IMAGE = "ember-bb:1"


@pytest.fixture(scope="module")
def rootfs():
    return busybox_rootfs(tmpdir("oci-engines-") / "rootfs")


@pytest.fixture(scope="module")
def ctd():
    need("containerd", "ctr", "containerd-shim-runc-v2", "runc")
    base = tmpdir("oci-containerd-")
    c = Containerd(base)
    yield c
    c.stop()
    shutil.rmtree(base, ignore_errors=True)


def ctr_run(ctd, rt, *args, **kw):
    return ctd.ctr("run", "--runtime", "io.containerd.runc.v2", "--runc-binary",
                   CTR_RUNTIMES[rt], *args, **kw)


def task_status(ctd, cid):
    for line in ctd.ctr("task", "ls").out.splitlines():
        f = line.split()
        if f and f[0] == cid:
            return f[2]
    return None


@pytest.mark.parametrize("rt", ["runc", "ember"])
def test_ctr_run_exit_streams_kill_delete(ctd, rt, rootfs, images):
    r = ctr_run(ctd, rt, "--rm", "--rootfs", rootfs, f"t1-{rt}", "/bin/sh", "-c",
                "echo out; echo err >&2; exit 7")
    assert (r.code, r.out, r.err) == (7, "out\n", "err\n"), r
    cid = f"t2-{rt}"
    r = ctr_run(ctd, rt, "-d", "--rootfs", rootfs, cid, "/bin/sleep", "600")
    assert r.code == 0, r
    assert task_status(ctd, cid) == "RUNNING"
    ps = ctd.ctr("task", "ps", cid)  # the shim's Pids: `ps --format json`
    assert ps.code == 0 and len(ps.out.splitlines()) >= 2, ps
    assert ctd.ctr("task", "kill", "-s", "SIGKILL", cid).code == 0
    assert wait_for(lambda: task_status(ctd, cid) == "STOPPED", 60), ctd.ctr("task", "ls")
    d = ctd.ctr("task", "delete", cid)
    assert d.code == 0, d
    assert ctd.ctr("container", "rm", cid).code == 0
    if rt == "ember":  # the shim's --root for runc-type runtimes is /run/containerd/runc/<ns>
        assert wait_for(lambda: leftovers("/run/containerd/runc/default")[1] == [], 30)
        assert cid not in leftovers("/run/containerd/runc/default")[0]


@pytest.fixture(scope="module")
def dockerd(rootfs):
    need("dockerd", "docker")
    base = tmpdir("oci-docker-")
    d = Dockerd(base)
    tar = subprocess.run(["tar", "-C", str(rootfs), "-cf", "-", "."], capture_output=True,
                         check=True).stdout
    r = d.docker("import", "-", IMAGE, input=tar)
    assert r.code == 0, r
    yield d
    d.docker("rm", "-f", *d.docker("ps", "-aq").out.split())
    d.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("rt", ["runc", "ember"])
def test_docker_run_and_stop(dockerd, rt, images):
    r = dockerd.docker("run", "--rm", "-i", "--runtime", rt, "--network", "none", IMAGE,
                       "/bin/sh", "-c", "cat; echo err >&2; exit 7", input=b"out\n")
    assert (r.code, r.out, r.err) == (7, "out\n", "err\n"), r
    r = dockerd.docker("run", "-d", "--runtime", rt, "--network", "none", IMAGE, "sleep", "600")
    assert r.code == 0, r
    cid = r.out.strip()
    assert dockerd.docker("stop", "-t", "3", cid, timeout=120).code == 0
    code = dockerd.docker("inspect", "-f", "{{.State.ExitCode}}", cid).out.strip()
    assert code == ("137" if rt == "runc" else "143"), code
    dockerd.docker("rm", cid)
