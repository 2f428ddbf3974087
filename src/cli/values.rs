//! The value parsers of the flags: durations, session lengths, binding,
//! instance and profile names. Each is the one rule every subcommand (and
//! doctor's checks) shares.

use std::time::Duration;

use crate::naming;

/// A cross-account session length (`--assume-role-duration-seconds`): whole
/// seconds, optionally with an `s`, within STS's limits for a chained
/// session. The one rule `run`, `plan`, `apply` and `doctor` share.
///
/// # Errors
/// Why the value is refused: not a number, or outside 900..=3600.
pub fn session_seconds(raw: &str) -> Result<u32, SessionError> {
    use crate::aws::assume::{MAX_CHAINED_SESSION_SECONDS, MIN_SESSION_SECONDS};
    let s: u32 = raw
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| SessionError::NotSeconds)?;
    if s > MAX_CHAINED_SESSION_SECONDS {
        return Err(SessionError::OverChainLimit(s));
    }
    if s < MIN_SESSION_SECONDS {
        return Err(SessionError::BelowMinimum(s));
    }
    Ok(s)
}

/// Why [`session_seconds`] refused a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("not a number of seconds")]
    NotSeconds,
    #[error(
        "{0} is over 3600; assuming a role from IRSA or Pod Identity credentials is role chaining, and STS rejects chained sessions longer than one hour"
    )]
    OverChainLimit(u32),
    #[error("{0} is below STS's minimum of 900")]
    BelowMinimum(u32),
}

/// Parses `90`, `500ms`, `30s`, `5m`, `1h`, `1h30m`.
///
/// # Errors
/// A message naming the bad value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use e.g. 500ms, 30s, 5m, 1h30m");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let too_long = || {
        format!(
            "duration {s:?} is out of range: at most {}h (one year)",
            MAX_DURATION.as_secs() / 3600
        )
    };
    if let Ok(secs) = s.parse::<u64>() {
        let d = Duration::from_secs(secs);
        return if d > MAX_DURATION {
            Err(too_long())
        } else {
            Ok(d)
        };
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(secs).map_err(|_| too_long())?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= MAX_DURATION)
            .ok_or_else(too_long)?;
    }
    Ok(total)
}

/// The longest duration any flag takes: beyond it, deadlines and timers
/// would overflow the clock, and no timeout or interval needs more.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `--binding NAMESPACE/NAME`.
///
/// # Errors
/// A message for clap when the value is not `NAMESPACE/NAME`.
pub fn parse_binding_ref(s: &str) -> Result<naming::BindingKey, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(naming::BindingKey {
                namespace: ns.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(format!("{s:?} must be NAMESPACE/NAME")),
    }
}

/// `--instance i-…`: `i-` and 8 or 17 hex digits.
///
/// # Errors
/// A message for clap naming the expected form.
pub fn parse_instance_id(s: &str) -> Result<String, String> {
    let hex = s.strip_prefix("i-").unwrap_or_default();
    if (hex.len() == 8 || hex.len() == 17) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not an instance id (i- and 8 or 17 hex digits)"
        ))
    }
}

/// `--instance-profile NAME`: 1-128 characters of `[\w+=,.@-]`.
///
/// # Errors
/// A message for clap naming the allowed characters.
pub fn parse_profile_name(s: &str) -> Result<String, String> {
    let ok = (1..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not an instance profile name (1-128 letters, digits and _+=,.@-)"
        ))
    }
}

/// `--event-queue NAME_OR_URL`: an SQS queue name (1-80 letters, digits, `-`
/// and `_`, `.fifo` allowed at the end) or a queue URL; empty turns it off.
///
/// # Errors
/// A message for clap naming both accepted forms.
pub fn parse_event_queue(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || crate::aws::sqs::is_queue_url(s) {
        return Ok(s.to_string());
    }
    let base = s.strip_suffix(".fifo").unwrap_or(s);
    let ok = (1..=80).contains(&s.len())
        && !base.is_empty()
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is neither an SQS queue name (1-80 letters, digits, - and _) nor a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
        ))
    }
}

#[cfg(test)]
mod event_queue_tests {
    use super::parse_event_queue;

    #[test]
    fn a_queue_is_a_name_or_a_url_or_nothing() {
        for ok in [
            "ipb-events",
            "ipb_events.fifo",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/ipb-events",
            "",
            "  ",
        ] {
            assert!(parse_event_queue(ok).is_ok(), "{ok}");
        }
        assert_eq!(parse_event_queue(" q ").as_deref(), Ok("q"));
        for bad in [
            "arn:aws:sqs:eu-west-1:123456789012:q",
            "a b",
            ".fifo",
            &"q".repeat(81),
        ] {
            assert!(parse_event_queue(bad).is_err(), "{bad}");
        }
    }
}
