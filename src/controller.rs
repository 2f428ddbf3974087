//! The `run` controller.

use crate::cli::{GlobalArgs, RunArgs};

/// Runs the controller until SIGTERM.
///
/// # Errors
/// Start-up failures.
pub async fn run(_global: &GlobalArgs, _args: &RunArgs) -> crate::Result<()> {
    Err(crate::Error::Config("run: not built yet".into()))
}
