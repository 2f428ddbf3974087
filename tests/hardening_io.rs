//! The hardening issue's items about a hostile network and interruptions,
//! each as a test that failed before its fix: `apply --timeout` bounds AWS
//! calls that never answer, a proxy's HTML error page is named for what it is,
//! and SIGINT/SIGTERM end `apply` with a summary of what it changed.
//! (The symlink-loop item is unit-tested in `src/files.rs`.)

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Aws, Run, binding, path_str, write_bindings};

const NS: &str = "team-a";

/// One binding `web` of role `web-app` on one fresh instance.
async fn one_binding(aws: &Aws) -> (tempfile::TempDir, std::path::PathBuf) {
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    write_bindings(&binding(
        NS,
        "web",
        "web-app",
        &format!("{{ids: [{}]}}", inst[0]),
        "",
    ))
}

/// The binary, started in the background like [`common::cli`] runs it, its
/// output going to files in `dir`.
fn spawn(endpoint: &str, args: &[&str], dir: &Path) -> Child {
    let out = std::fs::File::create(dir.join("stdout")).expect("stdout file");
    let err = std::fs::File::create(dir.join("stderr")).expect("stderr file");
    Command::new(common::bin())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", common::REGION)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("IPB_CLUSTER_ID", "test")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start the binary")
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Waits at most `limit` for the child; kills it (and fails) past that.
fn finish(mut child: Child, dir: &Path, limit: Duration) -> (Run, Duration) {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = Run {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: std::fs::read_to_string(dir.join("stdout")).unwrap_or_default(),
        stderr: std::fs::read_to_string(dir.join("stderr")).unwrap_or_default(),
    };
    assert!(status.is_some(), "still running after {limit:?}: {run:?}");
    (run, start.elapsed())
}

/// Polls the proxy's call log until `pred` holds (at most 60 s).
fn wait_for_calls(aws: &Aws, what: &str, pred: impl Fn(&[(String, u16, Option<String>)]) -> bool) {
    let start = Instant::now();
    while !pred(&aws.calls()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {what}: {:?}",
            aws.calls()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Item 11: AWS holds a call without answering. `apply --timeout 5s` used to
/// wait for the SDK's 60 s operation timeout; now the deadline bounds the
/// call: the summary comes at 5 s, the binding named as timed out, with the
/// changes already sent. Also when the very first read hangs.
#[tokio::test]
async fn apply_timeout_bounds_aws_calls_that_never_answer() {
    require_moto!();
    let aws = Aws::start().await;
    let (_d, file) = one_binding(&aws).await;
    let file = path_str(&file);

    // A write hangs: the profile is made, the association never answers.
    aws.fault_config(
        r#"{"hang_seconds": 300, "scripted_faults": [{"kind": "hang", "action": "AssociateIamInstanceProfile", "count": 100}]}"#,
    );
    let start = Instant::now();
    let r = common::cli(&aws.endpoint(), &["apply", "-f", file, "--timeout", "5s"]);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}: {r:?}");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("team-a/web: not ready after 5s: timed out: an AWS call had not answered\n"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("Apply: 0 of 1 binding done, 1 not."),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("Timed out after 5s. Changes sent to AWS: ")
            && r.stdout.contains("CreateInstanceProfile=1")
            && r.stdout.contains("1 pass was cut short"),
        "{r:?}"
    );

    // The first read hangs: no binding was looked at, each still reported.
    aws.reset_calls();
    aws.fault_config(
        r#"{"hang_seconds": 300, "scripted_faults": [{"kind": "hang", "action": "DescribeInstances", "count": 100}]}"#,
    );
    let start = Instant::now();
    let r = common::cli(&aws.endpoint(), &["apply", "-f", file, "--timeout", "5s"]);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}: {r:?}");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains(
            "team-a/web: not ready after 5s: AwsUnavailable: AWS had not answered when the timeout passed"
        ),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("Timed out after 5s. Changes sent to AWS: none."),
        "{r:?}"
    );
}

/// Item 13: a proxy or load balancer answers with an HTML 502 page. The
/// message used to be `failed: Unknown: `; now it names the HTTP status and
/// says the answer was not AWS's, for IAM's and EC2's protocols alike, and
/// the error stays retryable (`apply` rides out a burst of them).
#[tokio::test]
async fn an_html_error_page_is_named_for_what_it_is() {
    require_moto!();
    let aws = Aws::start().await;
    let (_d, file) = one_binding(&aws).await;
    let file = path_str(&file);
    for action in ["ListInstanceProfiles", "DescribeInstances"] {
        aws.reset_calls();
        aws.fault_config(&format!(
            r#"{{"scripted_faults": [{{"kind": "html_502", "action": "{action}", "count": 100}}]}}"#
        ));
        let r = common::cli(&aws.endpoint(), &["plan", "-f", file]);
        assert_eq!(r.code, 1, "{action}: {r:?}");
        assert!(
            r.stderr.contains(&format!(
                "{action} failed: NonAwsResponse: HTTP 502 from the endpoint, not an AWS error response (a proxy or load balancer answered?): 502 Bad Gateway"
            )),
            "{action}: {r:?}"
        );
        assert!(!r.stderr.contains("Unknown"), "{action}: {r:?}");
        // Retried by the SDK as any 502 is.
        let pages = aws
            .calls()
            .iter()
            .filter(|c| c.2.as_deref() == Some("html_502"))
            .count();
        assert!(pages > 1, "{action}: not retried: {:?}", aws.calls());
    }
    // More pages than the SDK's attempts: apply retries the read and converges.
    aws.reset_calls();
    aws.fault_config(
        r#"{"scripted_faults": [{"kind": "html_502", "action": "DescribeInstances", "count": 6}]}"#,
    );
    let r = common::cli(&aws.endpoint(), &["apply", "-f", file, "--timeout", "60s"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Apply: 1 of 1 binding done."), "{r:?}");
}

/// Item 16: SIGINT while `apply` waits for IAM→EC2 propagation. It used to
/// die on the spot with no output; now it prints what it changed and what is
/// not done, and exits 130, at once (no AWS call was in flight).
#[tokio::test]
async fn sigint_ends_apply_with_a_summary_of_what_changed() {
    require_moto!();
    let aws = Aws::start().await;
    let (dir, file) = one_binding(&aws).await;
    aws.fault_config(r#"{"propagation_seconds": 600}"#);
    let child = spawn(
        &aws.endpoint(),
        &["apply", "-f", path_str(&file), "--timeout", "5m"],
        dir.path(),
    );
    wait_for_calls(&aws, "propagation rejection", |calls| {
        calls.iter().any(|c| c.2.as_deref() == Some("propagation"))
    });
    signal(&child, "INT");
    let (r, took) = finish(child, dir.path(), Duration::from_secs(20));
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} after SIGINT: {r:?}"
    );
    assert_eq!(r.code, 130, "{r:?}");
    let profile = common::profile_name(NS, "web");
    assert!(
        r.stdout
            .contains(&format!("team-a/web: created instance profile {profile}"))
            && r.stdout.contains(&format!(
                "team-a/web: attach role web-app to instance profile {profile}"
            )),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("team-a/web: interrupted by SIGINT: PropagationPending: "),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("Apply: 0 of 1 binding done, 1 not."),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(
            "Interrupted by SIGINT. Changes sent to AWS: AddRoleToInstanceProfile=1 CreateInstanceProfile=1."
        ),
        "{r:?}"
    );
}

/// Item 16 with an AWS call in flight: SIGTERM lets it run for a grace of
/// 5 s (a second signal ends that at once), then the summary names the pass
/// cut short and the changes sent; exit 143, the first signal's.
#[tokio::test]
async fn sigterm_during_an_aws_call_reports_the_pass_cut_short() {
    require_moto!();
    let aws = Aws::start().await;
    let (dir, file) = one_binding(&aws).await;
    let hang = r#"{"hang_seconds": 300, "scripted_faults": [{"kind": "hang", "action": "AssociateIamInstanceProfile", "count": 100}]}"#;
    aws.fault_config(hang);
    let args = ["apply", "-f", path_str(&file), "--timeout", "5m"];

    // The grace ends by itself.
    let child = spawn(&aws.endpoint(), &args, dir.path());
    wait_for_calls(&aws, "AddRoleToInstanceProfile", |calls| {
        calls.iter().any(|c| c.0 == "AddRoleToInstanceProfile")
    });
    std::thread::sleep(Duration::from_millis(500)); // the association is in flight
    signal(&child, "TERM");
    let (r, took) = finish(child, dir.path(), Duration::from_secs(30));
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "took {took:?} after SIGTERM: {r:?}"
    );
    assert_eq!(r.code, 143, "{r:?}");
    assert!(
        r.stderr.contains("SIGTERM: stopping; waiting up to 5s"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("team-a/web: interrupted by SIGTERM during an AWS call"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("Apply: 0 of 1 binding done, 1 not."),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("Interrupted by SIGTERM. Changes sent to AWS: ")
            && r.stdout.contains("CreateInstanceProfile=1")
            && r.stdout.contains("1 pass was cut short"),
        "{r:?}"
    );

    // A second signal stops at once.
    aws.reset_calls();
    aws.fault_config(hang);
    let child = spawn(&aws.endpoint(), &args, dir.path());
    wait_for_calls(&aws, "GetRole", |calls| {
        calls.iter().any(|c| c.0 == "GetRole")
    });
    std::thread::sleep(Duration::from_millis(500)); // the association is in flight
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "INT");
    let (r, took) = finish(child, dir.path(), Duration::from_secs(30));
    assert!(took < Duration::from_secs(3), "took {took:?}: {r:?}");
    assert_eq!(r.code, 143, "{r:?}");
    assert!(
        r.stdout
            .contains("team-a/web: interrupted by SIGTERM during an AWS call"),
        "{r:?}"
    );
}
