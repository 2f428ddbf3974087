//! The reconcile pipeline, one file a step (docs/design.md says why in this
//! order): the gate ([`policy`]), where the binding lives ([`place`]),
//! [`observe`] (one bulk snapshot, a binding's slice of it), the [`role`],
//! then [`decide`] ⇄ [`act`] one action at a time, and [`status`] (the
//! report). [`engine`] runs them as a straight line; [`model`] and [`reason`]
//! are the vocabulary every step shares.

pub mod accounts;
pub mod act;
pub mod backoff;
pub mod cache;
pub mod compact;
pub mod decide;
pub mod engine;
pub mod model;
pub mod nodes;
pub mod observe;
pub mod orphans;
pub mod place;
pub mod policy;
pub mod propagation;
pub mod quota;
pub mod reason;
pub mod rivals;
pub mod role;
pub mod rotation;
pub mod status;
pub mod tags;

/// Deletion's decisions, also reachable as `reconcile::cleanup`.
pub use decide::cleanup;

pub use backoff::Backoffs;
pub use engine::{Engine, step_budget};
pub use model::{
    Action, ActionRecord, BindingInput, Decision, Desired, EngineConfig, Next, Outcome, Problem,
    selector_of,
};
pub use observe::{Observed, Selector, Snapshot};
pub use reason::{BackoffClass, Failure, Reason};
