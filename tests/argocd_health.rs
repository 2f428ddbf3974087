//! The Argo CD health check for InstanceProfileBinding (`deploy/argocd-health.lua`)
//! run for real: `tests/support/argocd_health_test.py` loads it into a fresh
//! Lua 5.1 runtime (lupa; Argo CD embeds gopher-lua, Lua 5.1 semantics) per
//! fixture of `deploy/argocd/iam.instanceprofile.dev/InstanceProfileBinding/`,
//! laid out as Argo CD's `resource_customizations` tests are. Also: the three
//! shipped copies of the script are one (scripts/generate-argocd.sh writes them).

use crate::common;

use std::process::Command;

use serde_json::Value;

const SOURCE: &str = "deploy/argocd-health.lua";
const CUSTOMIZATION: &str = "deploy/argocd/iam.instanceprofile.dev/InstanceProfileBinding";
const CM_PATCH: &str = "deploy/argocd-cm-patch.yaml";
const CM_KEY: &str =
    "resource.customizations.health.iam.instanceprofile.dev_InstanceProfileBinding";

fn read(path: &str) -> String {
    std::fs::read_to_string(common::repo().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[test]
fn health_check_passes_its_fixtures_under_lua_5_1() {
    let script = "argocd_health_test.py";
    let out = Command::new(common::python())
        .arg(common::repo().join("tests/support").join(script))
        .output()
        .expect("start python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    if last.starts_with("skipped:") && std::env::var("CI").as_deref() != Ok("true") {
        println!("{last} (bash scripts/python-env.sh installs it into .venv)");
        return;
    }
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(
        last.ends_with(" passed, 0 failed") && !last.starts_with("0 passed"),
        "{script}: {last}\n{stdout}"
    );
}

#[test]
fn the_three_copies_of_the_health_check_are_identical() {
    let lua = read(SOURCE);
    let fix = "edit deploy/argocd-health.lua, then run bash scripts/generate-argocd.sh";
    assert_eq!(
        read(&format!("{CUSTOMIZATION}/health.lua")),
        lua,
        "{CUSTOMIZATION}/health.lua differs from {SOURCE}: {fix}"
    );
    let patch: Value = serde_norway::from_str(&read(CM_PATCH)).expect("argocd-cm-patch.yaml");
    assert_eq!(patch["kind"], "ConfigMap");
    assert_eq!(patch["metadata"]["name"], "argocd-cm");
    assert_eq!(
        patch["data"][CM_KEY].as_str(),
        Some(lua.as_str()),
        "{CM_PATCH} does not embed {SOURCE} unchanged under {CM_KEY}: {fix}"
    );
}

/// The cases the fixtures must keep covering, with the health Argo CD shows.
#[test]
fn fixtures_cover_every_documented_case() {
    let tests: Value = serde_norway::from_str(&read(&format!("{CUSTOMIZATION}/health_test.yaml")))
        .expect("health_test.yaml");
    let tests = tests["tests"].as_array().expect("health_test.yaml: tests");
    let expected = [
        ("ready", "Healthy"),
        ("progressing-propagation", "Progressing"),
        ("progressing-throttled", "Progressing"),
        ("degraded-access-denied", "Degraded"),
        ("degraded-role-not-found", "Degraded"),
        ("no-status", "Progressing"),
        ("old-generation", "Progressing"),
        ("deleting", "Progressing"),
        ("deleting-stalled", "Degraded"),
        ("legacy-ready-false-transient", "Progressing"),
        ("legacy-ready-false-bad", "Degraded"),
    ];
    for (name, status) in expected {
        let input = format!("testdata/{name}.yaml");
        let test = tests
            .iter()
            .find(|t| t["inputPath"] == input.as_str())
            .unwrap_or_else(|| panic!("health_test.yaml has no test for {input}"));
        assert_eq!(test["healthStatus"]["status"], status, "{input}");
        assert!(
            common::repo().join(CUSTOMIZATION).join(&input).is_file(),
            "{CUSTOMIZATION}/{input} is missing"
        );
    }
}
