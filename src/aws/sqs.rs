//! SQS: the event queue `run --event-queue` consumes (EventBridge rules
//! deliver EC2 and CloudTrail events to it; docs/events.md).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

use super::errors::from_sdk;
use super::{Aws, AwsError, ErrorKind};

const SQS: &str = "sqs";
/// SQS's longest long poll: an empty queue costs one call every 20 s.
pub const WAIT_SECONDS: i32 = 20;
/// SQS's largest batch.
pub const BATCH: i32 = 10;

/// The SQS client of `conf`: an attempt may last the long poll and then some.
pub(super) fn client(conf: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(
            u64::from(WAIT_SECONDS.unsigned_abs()) + 10,
        ))
        .operation_timeout(Duration::from_secs(90))
        .build();
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(conf)
            .timeout_config(timeouts)
            .build(),
    )
}

/// One message as received: its body and the handle that deletes it.
#[derive(Clone, Debug)]
pub struct Message {
    pub body: String,
    pub receipt_handle: String,
}

/// Whether `queue` is a queue URL (else a queue name).
#[must_use]
pub fn is_queue_url(queue: &str) -> bool {
    queue.starts_with("https://") || queue.starts_with("http://")
}

impl Aws {
    /// The URL of `queue`, a queue name or already a URL (users of
    /// Karpenter's `--interruption-queue` mix the two up, so both work).
    ///
    /// # Errors
    /// `GetQueueUrl`'s error (`AWS.SimpleQueueService.NonExistentQueue`, access denied).
    pub async fn queue_url(&self, queue: &str) -> Result<String, AwsError> {
        if is_queue_url(queue) {
            return Ok(queue.to_string());
        }
        let out = self
            .counted(SQS, "GetQueueUrl", || async {
                self.sqs
                    .get_queue_url()
                    .queue_name(queue)
                    .send()
                    .await
                    .map_err(|e| from_sdk(SQS, "GetQueueUrl", &e))
            })
            .await?;
        out.queue_url().map(str::to_string).ok_or_else(|| AwsError {
            kind: ErrorKind::Transient,
            service: SQS,
            action: "GetQueueUrl",
            code: "EmptyResponse".into(),
            message: format!("GetQueueUrl returned no URL for {queue}"),
        })
    }

    /// One long poll: up to [`BATCH`] messages, hidden from other consumers
    /// for `visibility` (longer than handling them takes).
    ///
    /// # Errors
    /// `ReceiveMessage`'s error.
    pub async fn receive_messages(
        &self,
        queue_url: &str,
        visibility: Duration,
    ) -> Result<Vec<Message>, AwsError> {
        let visibility = i32::try_from(visibility.as_secs()).unwrap_or(i32::MAX);
        let out = self
            .counted(SQS, "ReceiveMessage", || async {
                self.sqs
                    .receive_message()
                    .queue_url(queue_url)
                    .max_number_of_messages(BATCH)
                    .wait_time_seconds(WAIT_SECONDS)
                    .visibility_timeout(visibility)
                    .send()
                    .await
                    .map_err(|e| from_sdk(SQS, "ReceiveMessage", &e))
            })
            .await?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Message {
                    body: m.body().unwrap_or_default().to_string(),
                    receipt_handle: m.receipt_handle()?.to_string(),
                })
            })
            .collect())
    }

    /// Deletes handled messages, one call for a batch; the handles SQS
    /// refused come back (they reappear after their visibility timeout).
    ///
    /// # Errors
    /// `DeleteMessageBatch`'s error.
    pub async fn delete_messages(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<String>, AwsError> {
        if receipt_handles.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipt_handles
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
                    .ok()
            })
            .collect();
        let out = self
            .counted(SQS, "DeleteMessageBatch", || async {
                self.sqs
                    .delete_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| from_sdk(SQS, "DeleteMessageBatch", &e))
            })
            .await?;
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| {
                let i: usize = f.id().parse().ok()?;
                receipt_handles.get(i).cloned()
            })
            .collect())
    }
}
