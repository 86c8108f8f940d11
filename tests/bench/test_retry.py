"""tests/bench/run: a lost test host or a stalled peer costs nothing. Every guest row left
incomplete on either side (ember or QEMU) runs again in a fresh test host, up to twice more; a
row still incomplete after that fails, naming the cause. Drives the real retry loop with a fake
test host (no KVM needed)."""
import importlib.machinery
import importlib.util
import pathlib

RUN = pathlib.Path(__file__).resolve().parent / "run"
loader = importlib.machinery.SourceFileLoader("bench_run", str(RUN))
spec = importlib.util.spec_from_loader("bench_run", loader)
bench = importlib.util.module_from_spec(spec)
loader.exec_module(bench)

# A complete boot-128 sample: a number for every metric the table has for the row.
BOOT = {key: 1.0 for row, key, *_ in bench.TABLE if row == "boot-128"}
QEMU_BOOT = {k: v for k, v in BOOT.items() if k not in bench.EMBER_ONLY}
DENSITY = {"asked": 2, "launched": 2, "started": 2, "rate_per_s": 0.3, "mem_per_vm_mib": 40.0}


def boot_pair():
    return {"ember": [dict(BOOT)], "qemu": [dict(QEMU_BOOT)]}


class FakeHosts:
    """Each launch plays one test host: script[i] says what attempt i yields."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def __call__(self, rows, runs, part):
        self.calls.append((list(rows), runs))
        return self.script[len(self.calls) - 1](rows)


def lost_during_density(rows):
    # ember's density sample was saved, then the test host locked up during QEMU's density run.
    got = {}
    if "boot-128" in rows:
        got["boot-128"] = boot_pair()
    if "density" in rows:
        got["density"] = {"ember": [dict(DENSITY)]}
    return 125, "the test host locked up (its CPUs stuck for 131 s)", got


def everything(rows):
    got = {}
    if "boot-128" in rows:
        got["boot-128"] = boot_pair()
    if "density" in rows:
        got["density"] = {"ember": [dict(DENSITY)], "qemu": [dict(DENSITY)]}
    return 0, "", got


def test_row_with_only_ember_numbers_runs_again_and_completes():
    raw, hosts = {}, FakeHosts([lost_during_density, everything])
    attempts = bench.run_guest_rows(["boot-128", "density"], 1, hosts, raw)
    assert hosts.calls == [(["boot-128", "density"], 1), (["density"], 1)]
    assert len(attempts) == 2
    assert bench.deficit(raw, "density", 1) == 0 and bench.deficit(raw, "boot-128", 1) == 0
    assert bench.checks(raw, 1, attempts) == []
    assert len(raw["boot-128"]["ember"]) == 1  # complete rows are not run twice


def test_row_still_incomplete_after_two_retries_fails_naming_the_cause(capsys):
    raw, hosts = {}, FakeHosts([lost_during_density] * 3)
    attempts = bench.run_guest_rows(["boot-128", "density"], 1, hosts, raw)
    assert [c[0] for c in hosts.calls] == [["boot-128", "density"], ["density"], ["density"]]
    bad = bench.checks(raw, 1, attempts)
    assert bad == ["density/rate_per_s", "density/mem_per_vm_mib"]
    out = capsys.readouterr().out
    assert "bench-check density/rate_per_s FAIL (no qemu samples" in out
    assert "locked up" in out and "attempt 3" in out
    assert "bench-check boot-128/ready_s ok" in out


def test_stalled_peer_sample_counts_as_incomplete():
    def peer_timeout(rows):
        return 0, "", {"blk": {"ember": [{"seqread": 1, "seqwrite": 2, "randread": 3, "randwrite": 4}],
                               "qemu": [{"seqread": 1, "seqwrite": 2, "randwrite": 4,
                                         "error": "timeout after 300 s"}]}}

    def peer_ok(rows):
        return 0, "", {"blk": {"ember": [{"seqread": 1, "seqwrite": 2, "randread": 3, "randwrite": 4}],
                               "qemu": [{"seqread": 1, "seqwrite": 2, "randread": 3, "randwrite": 4}]}}

    raw, hosts = {}, FakeHosts([peer_timeout, peer_ok])
    attempts = bench.run_guest_rows(["blk"], 1, hosts, raw)
    assert len(hosts.calls) == 2 and bench.checks(raw, 1, attempts) == []


def test_multi_run_rows_rerun_only_what_is_missing():
    def two_of_five(rows):
        return 125, "the test host stopped responding", {
            "boot-128": {"ember": [dict(BOOT)] * 2, "qemu": [dict(QEMU_BOOT)] * 2}}

    def three_more(rows):
        return 0, "", {"boot-128": {"ember": [dict(BOOT)] * 3, "qemu": [dict(QEMU_BOOT)] * 3}}

    raw, hosts = {}, FakeHosts([two_of_five, three_more])
    bench.run_guest_rows(["boot-128"], 5, hosts, raw)
    assert hosts.calls == [(["boot-128"], 5), (["boot-128"], 3)]
    assert bench.deficit(raw, "boot-128", 5) == 0
