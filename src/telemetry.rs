//! The tracing subscriber: text or JSON on stderr.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` is an `EnvFilter` directive such
/// as `info` or `instance_profile_controller=debug,warn`.
///
/// # Errors
/// A message when the level directive does not parse.
pub fn init(format: &str, level: &str) -> Result<(), String> {
    let directive = if level.contains('=') || level.contains(',') {
        level.to_string()
    } else {
        // Our crate at the chosen level; dependencies only warn.
        format!("warn,instance_profile_controller={level}")
    };
    let filter =
        EnvFilter::try_new(&directive).map_err(|e| format!("--log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        "json" => builder.json().flatten_event(true).try_init(),
        _ => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    result.map_err(|e| e.to_string())
}
