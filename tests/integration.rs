//! The integration tests, one binary: every file in tests/ is a module here
//! (`cargo nextest run -E 'test(/^moto::/)'` runs one file's tests). One
//! binary instead of one per file: each would link the whole AWS SDK again,
//! which made linking the slowest part of a cold CI run.

#[macro_use]
mod common;
mod invariants;

mod admission_agreement;
mod argocd_health;
mod chart;
mod cli;
mod cluster;
mod controller;
mod decide_props;
mod dockerfile;
mod doctor;
mod events;
mod failures_reach_bindings;
mod golden;
mod hardening;
mod hardening_io;
mod install_docs;
mod moto;
mod parse_fuzz;
mod quota;
mod reliability;
mod rotation;
mod scale;
mod shipping;
mod support_selftests;
