//! Restart intensity: at most N restarts in a sliding window, then escalate.

use std::collections::VecDeque;

/// Counts restarts in a sliding window of time.
#[derive(Clone, Debug)]
pub struct RestartIntensity {
    restarts_max: u32,
    window_ms: u64,
    recent_ms: VecDeque<u64>,
}

impl RestartIntensity {
    /// Allows `restarts_max` restarts in any `window_ms`.
    pub fn new(restarts_max: u32, window_ms: u64) -> RestartIntensity {
        RestartIntensity {
            restarts_max,
            window_ms,
            recent_ms: VecDeque::with_capacity(restarts_max as usize + 1),
        }
    }

    /// Records a restart at `now_ms`; false when it exceeds the limit (escalate).
    pub fn allow(&mut self, now_ms: u64) -> bool {
        while let Some(&oldest) = self.recent_ms.front() {
            if now_ms.saturating_sub(oldest) >= self.window_ms {
                self.recent_ms.pop_front();
            } else {
                break;
            }
        }
        if self.recent_ms.len() >= self.restarts_max as usize {
            return false;
        }
        self.recent_ms.push_back(now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_restarts_per_window() {
        let mut intensity = RestartIntensity::new(3, 1_000);
        assert!(intensity.allow(0));
        assert!(intensity.allow(10));
        assert!(intensity.allow(20));
        assert!(!intensity.allow(30), "fourth restart inside the window");
        assert!(intensity.allow(1_000), "the first one left the window");
        assert!(!intensity.allow(1_001));
    }
}
