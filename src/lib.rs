//! instance-profile-controller: keeps EC2 instance profiles in the state that
//! `InstanceProfileBinding` resources declare.

pub mod admission;
pub mod aws;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod doctor;
pub mod events;
pub mod filemode;
pub mod files;
pub mod leader;
pub mod metrics;
pub mod naming;
pub mod reconcile;
pub mod server;
pub mod telemetry;

/// Errors that end a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    #[error("kubernetes: {0}")]
    Kube(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
