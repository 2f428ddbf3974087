//! `--prune`: the profiles this cluster id owns whose binding is not in the
//! files (`reconcile::orphans`), as work for the deletion path.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::reconcile::Engine;
use crate::reconcile::orphans::{self, Orphan};
use crate::reconcile::policy::PolicySet;

use super::Work;

/// Profiles of this cluster whose owning binding is not in the files: in
/// this account, and in every account the files' policies name.
pub(super) async fn prune_targets(
    engine: &Engine,
    keep: &[Work],
    policies: Option<&Arc<PolicySet>>,
) -> Result<Vec<Work>, crate::Error> {
    let kept: BTreeSet<String> = keep
        .iter()
        .map(|w| engine.profile_name(&w.input.key))
        .collect();
    let mut out = Vec::new();
    for orphan in kept_out(orphans::find(engine, &engine.aws, &kept).await?) {
        out.push(work(orphans::cleanup_input(&orphan, None, None)));
    }
    for target in orphans::other_accounts(policies.map(AsRef::as_ref)) {
        let account = engine.accounts.get(&target);
        for orphan in kept_out(orphans::find(engine, &account.aws, &kept).await?) {
            let input = orphans::cleanup_input(&orphan, Some(&target), policies.cloned());
            out.push(work(input));
        }
    }
    Ok(out)
}

/// `deletionPolicy: Retain` outlives the binding: the profile says so.
fn kept_out(found: Vec<Orphan>) -> Vec<Orphan> {
    found
        .into_iter()
        .filter(|o| {
            if o.retained {
                eprintln!(
                    "notice: keeping instance profile {} of {}, gone from the files: its binding had deletionPolicy Retain",
                    o.name, o.owner
                );
            }
            !o.retained
        })
        .collect()
}

fn work(input: crate::reconcile::BindingInput) -> Work {
    Work { input, prune: true }
}
