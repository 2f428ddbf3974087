//! Role rotation (`spec.rotation.onRoleChange: Reassociate`): a role change
//! moves every associated instance to a fresh association, in batches of
//! `maxUnavailable`, so instances use the new role now instead of at IMDS's
//! next refresh. Against moto behind the fault proxy.

use crate::common;

use common::{Aws, binding, cli, ids, path_str, profile_name, write_bindings};

const NS: &str = "team-a";

fn rotating(role: &str, inst: &[String], max: &str) -> String {
    binding(
        NS,
        "web",
        role,
        &ids(inst),
        &format!("  rotation: {{onRoleChange: Reassociate, maxUnavailable: {max}}}\n"),
    )
}

fn count(aws: &Aws, action: &str) -> usize {
    aws.calls()
        .iter()
        .filter(|(a, status, _)| a == action && *status < 300)
        .count()
}

#[tokio::test]
async fn a_role_change_moves_every_instance_to_a_fresh_association_in_batches() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-a", common::TRUST_EC2).await;
    aws.create_role("web-b", common::TRUST_EC2).await;
    let mut inst = aws.run_instances(9, &[]).await;
    let stopped = aws.run_instances(1, &[]).await;
    inst.extend(stopped.iter().cloned());
    let (_d, file) = write_bindings(&rotating("web-a", &inst, "3"));
    let f = path_str(&file);
    let r = cli(&aws.endpoint(), &["apply", "-f", f, "--timeout", "60s"]);
    assert_eq!(r.code, 0, "{r:?}");
    // The first association is no role change: nothing to rotate.
    assert!(!r.stdout.contains("rotation"), "{r:?}");
    aws.stop_instance(&stopped[0]).await;

    let (_d2, changed) = write_bindings(&rotating("web-b", &inst, "3"));
    let c = path_str(&changed);
    let plan = cli(&aws.endpoint(), &["plan", "-f", c]);
    assert_eq!(plan.code, 2, "{plan:?}");
    // 10 instances, 3 at a time: 4 batches, each instance once.
    // Running instances are replaced in place; the stopped one is
    // disassociated, then associated anew.
    for id in &inst {
        let times = if *id == stopped[0] { 2 } else { 1 };
        assert_eq!(
            plan.stdout.matches(id.as_str()).count(),
            times,
            "{id} planned {times} time(s): {plan:?}"
        );
    }
    assert_eq!(
        plan.stdout.matches("(rotation batch 1 of 4)").count(),
        3,
        "{plan:?}"
    );
    assert_eq!(
        plan.stdout.matches("(rotation batch 4 of 4)").count(),
        1,
        "{plan:?}"
    );
    assert!(
        plan.stdout.find("attach role web-b") < plan.stdout.find("rotation batch 1"),
        "the role is swapped before any instance moves: {plan:?}"
    );

    aws.reset_calls();
    let r = cli(&aws.endpoint(), &["apply", "-f", c, "--timeout", "60s"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("team-a/web: Ready"), "{r:?}");
    // Running instances: replaced in place; the stopped one: disassociated
    // and associated anew (EC2 does not replace on a stopped instance).
    assert_eq!(count(&aws, "ReplaceIamInstanceProfileAssociation"), 9);
    assert_eq!(count(&aws, "DisassociateIamInstanceProfile"), 1);
    assert_eq!(count(&aws, "AssociateIamInstanceProfile"), 1);
    let name = profile_name(NS, "web");
    let held = aws.associations().await;
    for id in &inst {
        assert!(
            held.get(id).is_some_and(|a| a.1.ends_with(&name)),
            "{id}: {held:?}"
        );
    }
    let profiles = aws.profiles().await;
    assert_eq!(profiles[&name].2, vec!["web-b".to_string()]);

    // Converged: a second apply moves nothing.
    aws.reset_calls();
    let r = cli(&aws.endpoint(), &["apply", "-f", c, "--timeout", "60s"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        aws.mutating_calls().is_empty(),
        "{:?}",
        aws.mutating_calls()
    );
}

#[tokio::test]
async fn without_rotation_a_role_change_touches_no_association() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-a", common::TRUST_EC2).await;
    aws.create_role("web-b", common::TRUST_EC2).await;
    let inst = aws.run_instances(3, &[]).await;
    let (_d, file) = write_bindings(&binding(NS, "web", "web-a", &ids(&inst), ""));
    let r = cli(
        &aws.endpoint(),
        &["apply", "-f", path_str(&file), "--timeout", "60s"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let (_d2, changed) = write_bindings(&binding(
        NS,
        "web",
        "web-b",
        &ids(&inst),
        "  rotation: {onRoleChange: None}\n",
    ));
    aws.reset_calls();
    let r = cli(
        &aws.endpoint(),
        &["apply", "-f", path_str(&changed), "--timeout", "60s"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let mutating = aws.mutating_calls();
    assert!(
        mutating
            .iter()
            .all(|a| a == "RemoveRoleFromInstanceProfile" || a == "AddRoleToInstanceProfile"),
        "{mutating:?}"
    );
}
