//! Prometheus metrics (prometheus-client), one registry for the process.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    pub service: String,
    pub action: String,
    /// "ok" or the AWS error code.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// "ok", "requeue" or the error reason.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    /// The account id; the controller's own account is "home".
    pub account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The event's detail-type, or "other" (unknown, unreadable).
    pub detail_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IgnoredEventLabels {
    pub detail_type: String,
    /// Why it changed nothing: malformed, unknown, foreign-account, …
    pub reason: String,
}

/// The event queue's metrics (`run --event-queue`).
pub struct EventMetrics {
    pub received: Family<EventLabels, Counter>,
    pub deleted: Family<EventLabels, Counter>,
    pub ignored: Family<IgnoredEventLabels, Counter>,
    /// Event time to handled (bindings requeued).
    pub latency: Histogram,
    /// 1 while the last receive from the queue succeeded.
    pub queue_up: Gauge,
}

impl EventMetrics {
    fn register(registry: &mut Registry) -> Self {
        let out = Self {
            received: Family::default(),
            deleted: Family::default(),
            ignored: Family::default(),
            latency: Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
            queue_up: Gauge::default(),
        };
        registry.register(
            "events_received",
            "Events received from the event queue, by detail-type",
            out.received.clone(),
        );
        registry.register(
            "events_deleted",
            "Events deleted from the event queue after handling, by detail-type",
            out.deleted.clone(),
        );
        registry.register(
            "events_ignored",
            "Events that concerned no binding or could not be used, by detail-type and reason",
            out.ignored.clone(),
        );
        registry.register(
            "event_latency_seconds",
            "From an event's time to the controller acting on it",
            out.latency.clone(),
        );
        registry.register(
            "event_queue_up",
            "1 while the event queue answers, 0 while it fails (bindings reconcile on resyncs)",
            out.queue_up.clone(),
        );
        out
    }

    pub fn label(detail_type: &str) -> EventLabels {
        EventLabels {
            detail_type: detail_type.into(),
        }
    }

    pub fn ignore(&self, detail_type: &str, reason: &str) {
        self.ignored
            .get_or_create(&IgnoredEventLabels {
                detail_type: detail_type.into(),
                reason: reason.into(),
            })
            .inc();
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub events: EventMetrics,
    pub aws_calls: Family<AwsCallLabels, Counter>,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub bindings_by_reason: Family<ReasonLabels, Gauge>,
    pub propagation_wait: Histogram,
    pub leader: Gauge,
    /// Instance profiles in use and the quota, per account, as last read
    /// (before the controller creates one) and counted forward.
    pub instance_profiles: Family<AccountLabels, Gauge>,
    pub instance_profiles_quota: Family<AccountLabels, Gauge>,
    /// Profiles of this cluster id whose binding is gone, at the last sweep.
    pub orphaned_profiles: Gauge,
    /// Orphaned profiles the sweep deleted.
    pub orphans_deleted: Counter,
    /// Ready reason per binding, to keep `bindings_by_reason` exact.
    ready_reasons: Mutex<std::collections::HashMap<String, &'static str>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("instance_profile_controller");
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS API calls by service, action and error code",
            aws_calls.clone(),
        );
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register("reconciles", "Reconciles by result", reconciles.clone());
        let reconcile_duration =
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        let bindings_by_reason = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "bindings",
            "Bindings by Ready reason",
            bindings_by_reason.clone(),
        );
        let propagation_wait =
            Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0]);
        registry.register(
            "propagation_wait_seconds",
            "Time from profile creation until EC2 accepted it",
            propagation_wait.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let instance_profiles = Family::<AccountLabels, Gauge>::default();
        registry.register(
            "instance_profiles",
            "Instance profiles in the account (IAM GetAccountSummary, counted forward)",
            instance_profiles.clone(),
        );
        let instance_profiles_quota = Family::<AccountLabels, Gauge>::default();
        registry.register(
            "instance_profiles_quota",
            "The account's instance-profile quota (IAM GetAccountSummary)",
            instance_profiles_quota.clone(),
        );
        let orphaned_profiles = Gauge::default();
        registry.register(
            "orphaned_instance_profiles",
            "Instance profiles of this cluster id whose binding is gone, at the last orphan sweep",
            orphaned_profiles.clone(),
        );
        let orphans_deleted = Counter::default();
        registry.register(
            "orphaned_instance_profiles_deleted",
            "Orphaned instance profiles the sweep deleted",
            orphans_deleted.clone(),
        );
        let events = EventMetrics::register(&mut registry);
        Self {
            registry,
            events,
            orphaned_profiles,
            orphans_deleted,
            instance_profiles,
            instance_profiles_quota,
            aws_calls,
            reconciles,
            reconcile_duration,
            bindings_by_reason,
            propagation_wait,
            leader,
            ready_reasons: Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub fn record_aws_call(&self, service: &str, action: &str, code: &str) {
        self.aws_calls
            .get_or_create(&AwsCallLabels {
                service: service.into(),
                action: action.into(),
                code: code.into(),
            })
            .inc();
    }

    /// Sets the Ready reason of one binding (`None` when it is gone).
    pub fn set_binding_reason(&self, binding: &str, reason: Option<&'static str>) {
        let Ok(mut map) = self.ready_reasons.lock() else {
            return;
        };
        if let Some(old) = map.remove(binding) {
            self.bindings_by_reason
                .get_or_create(&ReasonLabels { reason: old.into() })
                .dec();
        }
        if let Some(reason) = reason {
            self.bindings_by_reason
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
            map.insert(binding.to_string(), reason);
        }
    }

    /// Sets one account's instance-profile usage and quota (`account`: the
    /// AssumeRole ARN that reaches it, empty for the controller's own).
    pub fn set_profile_usage(&self, account: &str, used: u64, quota: u64) {
        let labels = AccountLabels {
            account: if account.is_empty() {
                "home".into()
            } else {
                // An AssumeRole ARN: arn:aws:iam::<account>:role/…
                account.split(':').nth(4).unwrap_or(account).into()
            },
        };
        let as_gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.instance_profiles
            .get_or_create(&labels)
            .set(as_gauge(used));
        self.instance_profiles_quota
            .get_or_create(&labels)
            .set(as_gauge(quota));
    }

    /// The text exposition format.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_calls_and_binding_reasons() {
        let m = Metrics::new();
        m.record_aws_call("iam", "GetRole", "ok");
        m.set_binding_reason("a/b", Some("PropagationPending"));
        m.set_binding_reason("a/b", Some("Reconciled"));
        let text = m.encode();
        assert!(text.contains(r#"instance_profile_controller_aws_calls_total{service="iam",action="GetRole",code="ok"} 1"#), "{text}");
        assert!(
            text.contains(r#"instance_profile_controller_bindings{reason="Reconciled"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"instance_profile_controller_bindings{reason="PropagationPending"} 0"#),
            "{text}"
        );
    }
}
