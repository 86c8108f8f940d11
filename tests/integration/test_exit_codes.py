"""Every row of README's exit-code tables, each held by one test (here, or where named).

ember run ("Exit codes"):
  0 powered off             test_tiny_guests.py::test_serial_output_and_poweroff
  0 quit                    test_qmp.py::test_quit_before_boot_exits_zero_after_shutdown
  0-255 guest status        test_tiny_guests.py::test_exit_status_device_and_boot_timer
  120 reset                 test_tiny_guests.py::test_i8042_reset_exits_120
  121 panic                 test_tiny_guests.py::test_pvpanic_exits_121
  122 KVM cannot go on      test_kvm_run_error_exits_122
  123 forbidden call        test_sandbox.py::test_forbidden_syscall_is_named_and_exits_123
  124 time limit            test_exec.py::test_timeout
  125 ember failed          test_device_setup_out_of_descriptors_exits_125,
                            test_jailed_ember_killed_exits_125
  126 bad input             test_boot.py::test_bad_flags (and the other test_boot.py file checks)
  128+n host signal         test_stop_signals_exit_128_plus_n
ember exec ("ember exec" table):
  0-255 CMD status          test_exec.py::test_exit_status_env_workdir
  128+n CMD killed          test_exec.py::test_signal_and_not_found
  123 forbidden call        test_exec_forbidden_syscall_exits_123
  124 --timeout             test_exec.py::test_timeout
  125 ember or VM failed    test_exec_guest_reboot_exits_125
  126 usage, not executable test_exec_usage_and_not_executable_exit_126
  127 CMD not found         test_exec.py::test_signal_and_not_found
"""
import os
import subprocess

EXIT_USAGE = 126


def test_closed_stderr_still_gives_the_exit_code(ember):
    """A reader that went away must not turn an error into a SIGPIPE death (141): stderr is a
    pipe nobody reads, the flag is bad, the code is still 126."""
    r, w = os.pipe()
    os.close(r)
    try:
        cp = subprocess.run([str(ember), "run", "--cpus", "0", "--kernel", "/nonexistent"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=w,
                            timeout=60)
    finally:
        os.close(w)
    assert cp.returncode == EXIT_USAGE, cp.returncode
