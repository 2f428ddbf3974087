//! The self-tests of the Python test doubles (`tests/support/test_*.py`): the
//! Kubernetes API emulator and the AWS fault proxy must keep behaving like the
//! real services the other suites stand them in for.

use crate::common;

use std::process::Command;

fn run_selftest(script: &str) {
    let out = Command::new(common::python())
        .arg(common::repo().join("tests/support").join(script))
        .env("MOTO_SERVER", common::moto_server_bin().unwrap_or_default())
        .output()
        .expect("start python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" passed, 0 failed") && !last.starts_with("0 passed"),
        "{script}: {last}\n{stdout}"
    );
}

#[test]
fn kube_emulator_selftest() {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        println!("skipped: kubectl not installed (the emulator's self-test drives it)");
        return;
    }
    run_selftest("test_kube_emulator.py");
}

#[test]
fn faultproxy_selftest() {
    require_moto!();
    run_selftest("test_faultproxy.py");
}
