//! Client-side rate limits per API family: token buckets that wait instead of
//! spending the account's shared AWS budget on requests that would be throttled.

use std::str::FromStr;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// The families AWS throttles separately (EC2 per action class, IAM account-wide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    IamRead,
    IamWrite,
    Ec2Read,
    Ec2Write,
}

/// Requests per second and burst of one bucket, written `RATE[:BURST]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: f64,
}

impl FromStr for Limit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (rate, burst) = match s.split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let per_second: f64 = rate
            .trim()
            .parse()
            .map_err(|_| format!("rate limit {s:?} must be RATE[:BURST], e.g. 20:100"))?;
        let burst: f64 = match burst {
            Some(b) => b
                .trim()
                .parse()
                .map_err(|_| format!("rate limit burst in {s:?} must be a number"))?,
            None => per_second.max(1.0),
        };
        // Below one request an hour a bucket never refills in any run that
        // matters (and a wait computed from it overflows the clock).
        if !((MIN_RATE..=MAX_RATE).contains(&per_second) && (1.0..=MAX_BURST).contains(&burst)) {
            return Err(format!(
                "rate limit {s:?} is out of range: the rate must be {MIN_RATE:.6}..={MAX_RATE} requests a second (one an hour at least) and the burst 1..={MAX_BURST}"
            ));
        }
        Ok(Self { per_second, burst })
    }
}

/// One request an hour.
const MIN_RATE: f64 = 1.0 / 3600.0;
const MAX_RATE: f64 = 100_000.0;
const MAX_BURST: f64 = 100_000.0;

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.per_second, self.burst)
    }
}

/// The four limits. Defaults follow AWS's published EC2 buckets (non-mutating
/// 100 burst / 20 s⁻¹, mutating 200 / 5 s⁻¹ shared with the account, so we take
/// less) and a conservative share of IAM's unpublished account-wide rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub iam_read: Limit,
    pub iam_write: Limit,
    pub ec2_read: Limit,
    pub ec2_write: Limit,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            iam_read: Limit {
                per_second: 10.0,
                burst: 20.0,
            },
            iam_write: Limit {
                per_second: 5.0,
                burst: 10.0,
            },
            ec2_read: Limit {
                per_second: 10.0,
                burst: 50.0,
            },
            ec2_write: Limit {
                per_second: 5.0,
                burst: 20.0,
            },
        }
    }
}

struct Bucket {
    limit: Limit,
    state: Mutex<BucketState>,
    /// Callers waiting with priority: the next token is theirs.
    urgent: std::sync::atomic::AtomicUsize,
}

/// Counts a priority waiter for as long as it waits (a dropped wait too).
struct Urgent<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Urgent<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

struct BucketState {
    tokens: f64,
    last: Instant,
    /// Multiplier on the rate after throttling; recovers toward 1.
    slowdown: f64,
}

impl Bucket {
    fn new(limit: Limit) -> Self {
        Self {
            limit,
            state: Mutex::new(BucketState {
                tokens: limit.burst,
                last: Instant::now(),
                slowdown: 1.0,
            }),
            urgent: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Waits for a token; `urgent` ones go before the others waiting.
    async fn acquire(&self, urgent: bool) {
        use std::sync::atomic::Ordering;
        let _urgent = urgent.then(|| {
            self.urgent.fetch_add(1, Ordering::SeqCst);
            Urgent(&self.urgent)
        });
        loop {
            let wait = {
                let mut s = self.state.lock().await;
                let now = Instant::now();
                let rate = self.limit.per_second * s.slowdown;
                let elapsed = now.duration_since(s.last).as_secs_f64();
                s.tokens = (s.tokens + elapsed * rate).min(self.limit.burst);
                s.slowdown = (s.slowdown + elapsed * 0.05).min(1.0);
                s.last = now;
                // While a priority caller waits, the others leave it the
                // next token.
                let leave = if !urgent && self.urgent.load(Ordering::SeqCst) > 0 {
                    1.0
                } else {
                    0.0
                };
                if s.tokens >= 1.0 + leave {
                    s.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 + leave - s.tokens) / rate)
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn throttled(&self) {
        let mut s = self.state.lock().await;
        s.slowdown = (s.slowdown * 0.5).max(0.05);
        s.tokens = s.tokens.min(0.0);
    }
}

/// The buckets shared by every AWS call of the process.
pub struct RateLimiter {
    iam_read: Bucket,
    iam_write: Bucket,
    ec2_read: Bucket,
    ec2_write: Bucket,
}

impl RateLimiter {
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            iam_read: Bucket::new(limits.iam_read),
            iam_write: Bucket::new(limits.iam_write),
            ec2_read: Bucket::new(limits.ec2_read),
            ec2_write: Bucket::new(limits.ec2_write),
        }
    }

    fn bucket(&self, family: Family) -> &Bucket {
        match family {
            Family::IamRead => &self.iam_read,
            Family::IamWrite => &self.iam_write,
            Family::Ec2Read => &self.ec2_read,
            Family::Ec2Write => &self.ec2_write,
        }
    }

    /// Waits for a token of `family`.
    pub async fn acquire(&self, family: Family) {
        self.bucket(family).acquire(false).await;
    }

    /// Waits for a token of `family` before the callers of [`Self::acquire`]:
    /// for the calls that start a clock (a new profile's propagation).
    pub async fn acquire_first(&self, family: Family) {
        self.bucket(family).acquire(true).await;
    }

    /// AWS said "slow down": halve the family's rate; it recovers over ~20 s.
    pub async fn throttled(&self, family: Family) {
        self.bucket(family).throttled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(
            "20:100".parse::<Limit>(),
            Ok(Limit {
                per_second: 20.0,
                burst: 100.0
            })
        );
        assert_eq!(
            "5".parse::<Limit>(),
            Ok(Limit {
                per_second: 5.0,
                burst: 5.0
            })
        );
        assert!("0".parse::<Limit>().is_err());
        assert!("x:1".parse::<Limit>().is_err());
        assert!("1:0".parse::<Limit>().is_err());
        // Extreme values are refused with the range, never a panic or an endless wait.
        for extreme in ["1e-300:1", "1e-9:1", "inf", "NaN", "1:1e300", "1e10"] {
            let err = extreme.parse::<Limit>().expect_err(extreme);
            assert!(
                err.contains("out of range") || err.contains("must be"),
                "{err}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_spends_burst_then_waits_for_refill() {
        let limiter = RateLimiter::new(Limits {
            iam_read: Limit {
                per_second: 2.0,
                burst: 3.0,
            },
            ..Limits::default()
        });
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire(Family::IamRead).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire(Family::IamRead).await;
        assert!(start.elapsed() >= Duration::from_millis(499));
        limiter.throttled(Family::IamRead).await;
        let before = Instant::now();
        limiter.acquire(Family::IamRead).await;
        // at half rate a token takes about a second
        assert!(before.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test(start_paused = true)]
    async fn a_priority_caller_takes_the_next_token() {
        let limiter = std::sync::Arc::new(RateLimiter::new(Limits {
            iam_write: Limit {
                per_second: 1.0,
                burst: 1.0,
            },
            ..Limits::default()
        }));
        limiter.acquire(Family::IamWrite).await;
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let spawn = |name: &'static str, urgent: bool| {
            let (limiter, order) = (limiter.clone(), order.clone());
            tokio::spawn(async move {
                if urgent {
                    limiter.acquire_first(Family::IamWrite).await;
                } else {
                    limiter.acquire(Family::IamWrite).await;
                }
                order.lock().map(|mut o| o.push(name)).ok();
            })
        };
        let normal = spawn("normal", false);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let urgent = spawn("urgent", true);
        let (a, b) = (normal.await, urgent.await);
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(*order.lock().expect("order"), ["urgent", "normal"]);
        // A priority wait that is dropped leaves no claim behind.
        let dropped = tokio::time::timeout(
            Duration::from_millis(10),
            limiter.acquire_first(Family::IamWrite),
        )
        .await;
        assert!(dropped.is_err());
        let before = Instant::now();
        limiter.acquire(Family::IamWrite).await;
        assert!(before.elapsed() <= Duration::from_millis(1100));
    }
}
