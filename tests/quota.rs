//! Instance-profile quota headroom: creating a profile that would leave
//! fewer than `--profile-quota-reserve` free of the account's quota is
//! refused (`QuotaExceeded`, usage and quota named) before IAM is asked.
//! The fault proxy enforces a quota as IAM does (moto reports 1,000 and
//! enforces none).

use crate::common;

use common::{Aws, binding, cli, ids, path_str, write_bindings};

const NS: &str = "team-a";

fn count(aws: &Aws, action: &str) -> usize {
    aws.calls().iter().filter(|(a, _, _)| a == action).count()
}

#[tokio::test]
async fn creating_past_the_reserve_is_refused_before_iam_is_asked() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    aws.create_profile("someone-elses-1", "/").await;
    aws.create_profile("someone-elses-2", "/").await;
    let inst = aws.run_instances(2, &[]).await;
    let docs = [
        binding(NS, "a", "web-app", &ids(&inst[..1]), ""),
        binding(NS, "b", "web-app", &ids(&inst[1..]), ""),
    ]
    .concat();
    let (_d, file) = write_bindings(&docs);
    let f = path_str(&file);
    let ep = aws.endpoint();

    // 2 of 4 in use, 1 kept free: one more fits, the second would not.
    // (reset_calls resets the proxy's config too.)
    let quota = r#"{"instance_profile_quota": 4}"#;
    aws.reset_calls();
    aws.fault_config(quota);
    let r = cli(
        &ep,
        &[
            "apply",
            "-f",
            f,
            "--timeout",
            "30s",
            "--profile-quota-reserve",
            "1",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("team-a/a: Ready"), "{r:?}");
    assert!(
        r.stdout.contains("team-a/b: failed: QuotaExceeded")
            && r.stdout.contains("3 of 4 instance profiles in use")
            && r.stdout.contains("keeps 1 free"),
        "{r:?}"
    );
    assert_eq!(count(&aws, "CreateInstanceProfile"), 1, "{:?}", aws.calls());
    assert_eq!(
        count(&aws, "GetAccountSummary"),
        1,
        "one summary read a run: {:?}",
        aws.calls()
    );
    let mutating = aws.mutating_calls();
    assert!(
        !mutating.iter().any(|a| a.contains("InstanceProfile")
            && a != "CreateInstanceProfile"
            && a != "AddRoleToInstanceProfile"
            && a != "AssociateIamInstanceProfile"),
        "{mutating:?}"
    );

    // Without a reserve the last slot is used; past it, still no IAM write.
    aws.reset_calls();
    aws.fault_config(quota);
    let r = cli(&ep, &["apply", "-f", f, "--timeout", "30s"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(count(&aws, "CreateInstanceProfile"), 1, "{:?}", aws.calls());
    let (_d2, more) = write_bindings(&binding(NS, "c", "web-app", "{tags: {app: none}}", ""));
    aws.reset_calls();
    aws.fault_config(quota);
    let plan = cli(&ep, &["plan", "-f", path_str(&more)]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stdout.contains("QuotaExceeded") && plan.stdout.contains("4 of 4"),
        "{plan:?}"
    );
    let r = cli(&ep, &["apply", "-f", path_str(&more), "--timeout", "10s"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("QuotaExceeded"), "{r:?}");
    assert!(
        aws.mutating_calls().is_empty(),
        "{:?}",
        aws.mutating_calls()
    );
}

/// IAM's own refusal (`LimitExceeded` on create) is `QuotaExceeded` too; and
/// without a reserve, an account summary the controller may not read
/// (`iam:GetAccountSummary` missing from an older policy) does not block
/// creating: IAM's answer decides.
#[tokio::test]
async fn iams_own_limit_exceeded_is_quota_exceeded() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    aws.reset_calls();
    aws.fault_config(
        r#"{"instance_profile_quota": 0, "scripted_faults": [{"kind": "access_denied", "action": "GetAccountSummary", "count": 100}]}"#,
    );
    let (_d, file) = write_bindings(&binding(NS, "a", "web-app", &ids(&inst), ""));
    let r = cli(
        &aws.endpoint(),
        &["apply", "-f", path_str(&file), "--timeout", "10s"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("QuotaExceeded") && r.stdout.contains("Cannot exceed quota"),
        "{r:?}"
    );
    assert_eq!(count(&aws, "CreateInstanceProfile"), 1, "{:?}", aws.calls());
}
