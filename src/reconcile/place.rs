//! Where a binding's AWS resources live: this controller's account, or one a
//! policy names and AssumeRole reaches (docs/design.md). A binding lives in
//! one account at a time; its status records which (`assumeRoleArn`).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::aws::assume::AssumeTarget;
use crate::aws::{Aws, AwsError, RoleCache};
use crate::naming::BindingKey;

use super::accounts::{Account, Accounts};
use super::model::BindingInput;
use super::observe::Snapshot;
use super::policy::Admission;

/// A binding's account, reached: its snapshot, and the sessions to use.
pub enum Place<'a> {
    Home {
        snapshot: &'a Snapshot,
        aws: &'a Aws,
        roles: &'a RoleCache,
    },
    Other {
        account: Arc<Account>,
        snapshot: Arc<Snapshot>,
        /// The binding's own session (its writes are attributed to it).
        session: Box<Aws>,
    },
}

impl Place<'_> {
    #[must_use]
    pub fn snapshot(&self) -> &Snapshot {
        match self {
            Self::Home { snapshot, .. } => snapshot,
            Self::Other { snapshot, .. } => snapshot,
        }
    }

    /// The client a binding's changes go through.
    #[must_use]
    pub fn aws(&self) -> &Aws {
        match self {
            Self::Home { aws, .. } => aws,
            Self::Other { session, .. } => session,
        }
    }

    /// Role lookups are reads shared by the account's bindings: the
    /// account's own session and role cache.
    #[must_use]
    pub fn lookup(&self) -> (&Aws, &RoleCache) {
        match self {
            Self::Home { aws, roles, .. } => (aws, roles),
            Self::Other { account, .. } => (&account.aws, &account.roles),
        }
    }
}

/// Reaches the account `target` names (or the home one, `home`): a role
/// session for binding `key` and a snapshot of `paths` no older than
/// `home`'s.
pub async fn resolve<'a>(
    accounts: &Accounts,
    home: Place<'a>,
    key: &BindingKey,
    target: Option<&AssumeTarget>,
    paths: &BTreeSet<String>,
) -> Result<Place<'a>, AwsError> {
    let Some(target) = target else {
        return Ok(home);
    };
    let account = accounts.get(target);
    let snapshot = account.snapshot(home.snapshot().taken_at, paths).await?;
    let session = Box::new(account.session(key));
    Ok(Place::Other {
        account,
        snapshot,
        session,
    })
}

/// The account recorded in a binding's status (where its resources are),
/// with the external id a current policy gives for it.
#[must_use]
pub fn recorded(b: &BindingInput) -> Option<AssumeTarget> {
    let arn = b.previous.as_ref()?.assume_role_arn.clone()?;
    let external_id = b.policies.as_ref().and_then(|set| {
        set.policies
            .iter()
            .filter_map(|(_, p)| p.account.as_ref())
            .find(|a| a.assume_role_arn == arn)
            .and_then(|a| a.external_id.clone())
    });
    Some(AssumeTarget {
        role_arn: arn,
        external_id,
    })
}

/// Where deletion looks: the account the status records when it records
/// resources, else the one the policy names now.
#[must_use]
pub fn of_cleanup(b: &BindingInput) -> Option<AssumeTarget> {
    let recorded_anything = b
        .previous
        .as_ref()
        .is_some_and(|p| p.instance_profile.is_some() || p.assume_role_arn.is_some());
    if recorded_anything {
        return recorded(b);
    }
    b.policies
        .as_ref()
        .and_then(|set| match set.admit(&b.key.namespace, &b.spec) {
            Admission::Allowed {
                account: Some(a), ..
            } => Some(AssumeTarget::from(&a)),
            _ => None,
        })
}

/// Whether the binding's resources have to leave the account they are in
/// (`recorded`, see [`recorded`]) before it is reconciled in `target`.
#[must_use]
pub fn must_move(
    b: &BindingInput,
    recorded: Option<&AssumeTarget>,
    target: Option<&AssumeTarget>,
) -> bool {
    let had_resources = b
        .previous
        .as_ref()
        .and_then(|p| p.instance_profile.as_ref())
        .is_some_and(|p| p.arn.is_some());
    had_resources && recorded.map(|t| &t.role_arn) != target.map(|t| &t.role_arn)
}
