//! What a task's result means for the task: the retry rules of the SPEC's outcome table. Pure.

use crate::wire::RetryRule;

pub const STATE_ERR: i64 = -1;
pub const STATE_SUCC: i64 = 0;
pub const STATE_FAIL: i64 = 1;
pub const STATE_RETRY: i64 = 2;
/// Not run: the task was cancelled before it started (history records only; no callback).
pub const STATE_CANCELLED: i64 = 3;
/// Not started now: held back by a rate or concurrency limit, or given back because its topic is
/// paused (history records only; no callback). The task runs later, on the same attempt.
pub const STATE_HELD: i64 = 4;

pub const DEFAULT_RETRY_INTERVALS: [u64; 5] = [5, 300, 600, 3600, 7800];

/// How the handler ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Returned,
    /// `RetryException`, with the rule it carried, if any.
    Retry(RetryRule),
    /// `ServiceException`: a dependency is down.
    Service,
    /// Any other throwable, a missing class or method, a time limit.
    Failed,
}

/// What to do with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Ack,
    /// Publish again for run `attempt` after `delay` seconds.
    Again {
        delay: u64,
    },
    /// Into the failed store.
    Fail,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub retry_intervals: Vec<u64>,
    pub service_retries: u32,
    pub service_pause: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { retry_intervals: DEFAULT_RETRY_INTERVALS.to_vec(), service_retries: 10, service_pause: 5 }
    }
}

impl Policy {
    /// `attempt` is the run that just ended (1 for the first); `service_errors` counts earlier
    /// ServiceExceptions. Returns the status to report and what to do.
    pub fn decide(&self, ended: &Ended, attempt: u32, carried: Option<RetryRule>, service_errors: u32) -> (i64, Next) {
        match ended {
            Ended::Returned => (STATE_SUCC, Next::Ack),
            Ended::Failed => (STATE_FAIL, Next::Fail),
            Ended::Service => {
                if service_errors < self.service_retries {
                    (STATE_ERR, Next::Again { delay: self.service_pause })
                } else {
                    (STATE_FAIL, Next::Fail)
                }
            }
            Ended::Retry(given) => {
                // A rule given by this exception wins, else the one an earlier retry carried.
                let rule = if given.max.is_some() || given.interval.is_some() { Some(*given) } else { carried };
                match self.retry_delay(attempt, rule) {
                    Some(delay) => (STATE_RETRY, Next::Again { delay }),
                    None => (STATE_FAIL, Next::Fail),
                }
            }
        }
    }

    /// Delay before the run after `attempt`, or None when the runs are used up.
    pub fn retry_delay(&self, attempt: u32, rule: Option<RetryRule>) -> Option<u64> {
        let retries_done = attempt.saturating_sub(1) as usize; // retries already run
        match rule {
            Some(RetryRule { max, interval }) => {
                let max = max.map(|m| m as usize).unwrap_or(self.retry_intervals.len());
                if retries_done >= max {
                    return None;
                }
                Some(match interval {
                    Some(i) => i,
                    None => *self.retry_intervals.get(retries_done).or(self.retry_intervals.last()).unwrap_or(&5),
                })
            }
            None => self.retry_intervals.get(retries_done).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(max: Option<u32>, interval: Option<u64>) -> RetryRule {
        RetryRule { max, interval }
    }

    #[test]
    fn default_intervals_then_fail() {
        let p = Policy::default();
        let none = rule(None, None);
        let delays: Vec<_> = (1..=6).map(|a| p.decide(&Ended::Retry(none), a, None, 0)).collect();
        assert_eq!(delays[0], (STATE_RETRY, Next::Again { delay: 5 }));
        assert_eq!(delays[4], (STATE_RETRY, Next::Again { delay: 7800 }));
        assert_eq!(delays[5], (STATE_FAIL, Next::Fail));
    }

    #[test]
    fn given_rule_and_carried_rule() {
        let p = Policy::default();
        let r = rule(Some(2), Some(1));
        assert_eq!(p.decide(&Ended::Retry(r), 1, None, 0), (STATE_RETRY, Next::Again { delay: 1 }));
        assert_eq!(p.decide(&Ended::Retry(r), 2, None, 0), (STATE_RETRY, Next::Again { delay: 1 }));
        assert_eq!(p.decide(&Ended::Retry(r), 3, None, 0), (STATE_FAIL, Next::Fail));
        // a later plain RetryException keeps the rule the first one carried
        assert_eq!(p.decide(&Ended::Retry(rule(None, None)), 3, Some(r), 0), (STATE_FAIL, Next::Fail));
        // only a count: default intervals
        assert_eq!(p.retry_delay(2, Some(rule(Some(3), None))), Some(300));
        // only an interval: default count
        assert_eq!(p.retry_delay(5, Some(rule(None, Some(2)))), Some(2));
        assert_eq!(p.retry_delay(6, Some(rule(None, Some(2)))), None);
        assert_eq!(p.retry_delay(1, Some(rule(Some(0), Some(2)))), None);
    }

    #[test]
    fn other_outcomes() {
        let p = Policy { service_retries: 2, ..Policy::default() };
        assert_eq!(p.decide(&Ended::Returned, 1, None, 0), (STATE_SUCC, Next::Ack));
        assert_eq!(p.decide(&Ended::Failed, 1, None, 0), (STATE_FAIL, Next::Fail));
        assert_eq!(p.decide(&Ended::Service, 1, None, 0), (STATE_ERR, Next::Again { delay: 5 }));
        assert_eq!(p.decide(&Ended::Service, 1, None, 2), (STATE_FAIL, Next::Fail));
    }
}
