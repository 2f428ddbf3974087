//! `/healthz`, `/readyz` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct ServerState {
    pub metrics: Arc<Metrics>,
    /// Set once `run`'s preflight passed (the CRD is installed, AWS answers),
    /// before leader election: a standby replica is ready too.
    pub ready: Arc<AtomicBool>,
    /// What `/readyz` says beside "ready": degraded parts that do not make
    /// the replica unready (the event queue: bindings still reconcile on resyncs).
    pub detail: Arc<Detail>,
}

/// Lines `/readyz` adds to its answer, one per part, set and cleared by that part.
#[derive(Default)]
pub struct Detail {
    lines: Mutex<BTreeMap<&'static str, String>>,
}

impl Detail {
    /// Sets (`Some`) or clears what `part` reports.
    pub fn set(&self, part: &'static str, line: Option<String>) {
        if let Ok(mut lines) = self.lines.lock() {
            match line {
                Some(l) => lines.insert(part, l),
                None => lines.remove(part),
            };
        }
    }

    fn render(&self) -> String {
        self.lines
            .lock()
            .map(|lines| {
                lines
                    .iter()
                    .map(|(part, line)| format!("\n{part}: {line}"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<ServerState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, format!("ready{}", s.detail.render()))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the CRD and the binding cache".to_string(),
        )
    }
}

async fn metrics(State(s): State<ServerState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Serves until the process ends.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: std::net::SocketAddr,
    state: ServerState,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(state)).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    }))
}
