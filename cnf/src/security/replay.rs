//! The replay window of one session direction: which sequence numbers have been accepted, so
//! that a copied packet is refused while packets reordered by the network still pass.

use super::AuthError;

/// How far behind the highest accepted sequence number a packet may arrive.
pub const REPLAY_WINDOW: u64 = 64;

/// The highest accepted sequence number and a bitmap of the 64 at and below it (bit `i` =
/// `highest - i` was accepted). 16 bytes, kept per session and direction.
///
/// Use: [`ReplayWindow::check`] before or after verifying a packet's tag, and
/// [`ReplayWindow::accept`] only once the tag verified — otherwise a forged packet could move
/// the window and make genuine ones look too old.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReplayWindow {
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    /// A window that has accepted nothing.
    pub const fn new() -> ReplayWindow {
        ReplayWindow {
            highest: 0,
            seen: 0,
        }
    }

    /// The highest sequence number accepted so far (0: none yet).
    pub const fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `seq` may be accepted: not 0 (never sent), not seen before, and fewer than 64
    /// behind the highest accepted one.
    pub fn check(&self, seq: u64) -> Result<(), AuthError> {
        if seq == 0 {
            return Err(AuthError::ZeroSeq);
        }
        if seq > self.highest {
            return Ok(());
        }
        let behind = self.highest - seq;
        if behind >= REPLAY_WINDOW {
            return Err(AuthError::TooOld);
        }
        if self.seen & (1 << behind) != 0 {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }

    /// Records `seq` as received. Call only after its tag verified. A `seq` that
    /// [`ReplayWindow::check`] refuses leaves the window unchanged.
    pub fn accept(&mut self, seq: u64) {
        if self.check(seq).is_err() {
            return;
        }
        if seq > self.highest {
            let ahead = seq - self.highest;
            self.seen = if ahead >= REPLAY_WINDOW {
                0
            } else {
                self.seen << ahead
            };
            self.seen |= 1;
            self.highest = seq;
        } else {
            self.seen |= 1 << (self.highest - seq);
        }
    }

    /// [`ReplayWindow::check`] then [`ReplayWindow::accept`], for a packet whose tag already
    /// verified.
    pub fn check_and_accept(&mut self, seq: u64) -> Result<(), AuthError> {
        self.check(seq)?;
        self.accept(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fits_in_16_bytes() {
        assert_eq!(core::mem::size_of::<ReplayWindow>(), 16);
    }

    #[test]
    fn zero_is_never_accepted() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.check(0), Err(AuthError::ZeroSeq));
        window.accept(0);
        assert_eq!(window, ReplayWindow::new());
        window.accept(1);
        assert_eq!(window.check(0), Err(AuthError::ZeroSeq));
    }

    #[test]
    fn duplicates_are_replays() {
        let mut window = ReplayWindow::new();
        for seq in 1..=5 {
            assert_eq!(window.check_and_accept(seq), Ok(()));
        }
        for seq in 1..=5 {
            assert_eq!(window.check(seq), Err(AuthError::Replayed), "seq {seq}");
        }
        assert_eq!(window.check(6), Ok(()));
    }

    #[test]
    fn reordering_within_the_window_passes() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.check_and_accept(100), Ok(()));
        // Everything from 37 (63 behind) up to 99 may still arrive, once.
        for seq in (37..100).rev() {
            assert_eq!(window.check_and_accept(seq), Ok(()), "seq {seq}");
        }
        assert_eq!(window.check(36), Err(AuthError::TooOld), "64 behind");
        assert_eq!(window.check(1), Err(AuthError::TooOld));
        for seq in 37..=100 {
            assert_eq!(window.check(seq), Err(AuthError::Replayed));
        }
        assert_eq!(window.highest(), 100);
    }

    #[test]
    fn a_jump_forgets_the_old_bitmap() {
        let mut window = ReplayWindow::new();
        window.accept(1);
        window.accept(2);
        window.accept(1_000);
        assert_eq!(window.check(2), Err(AuthError::TooOld));
        assert_eq!(window.check(999), Ok(()));
        assert_eq!(window.check(937), Ok(()));
        assert_eq!(window.check(936), Err(AuthError::TooOld));
        window.accept(1_063);
        assert_eq!(
            window.check(1_000),
            Err(AuthError::Replayed),
            "63 behind: still known"
        );
        window.accept(1_064);
        assert_eq!(
            window.check(1_000),
            Err(AuthError::TooOld),
            "64 behind: out of the window"
        );
        assert_eq!(window.check(1_001), Ok(()));
        window.accept(u64::MAX);
        assert_eq!(window.check(u64::MAX), Err(AuthError::Replayed));
        assert_eq!(window.check(u64::MAX - 1), Ok(()));
    }

    #[test]
    fn accept_ignores_what_check_refuses() {
        let mut window = ReplayWindow::new();
        window.accept(200);
        let before = window;
        window.accept(100); // too old
        window.accept(200); // duplicate
        assert_eq!(window, before);
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// Against a set of every accepted number: the window accepts a sequence number iff it
        /// is new, not 0, and fewer than 64 behind the highest seen.
        #[test]
        fn agrees_with_a_set(seqs in proptest::collection::vec(0u64..300, 0..400)) {
            let mut window = ReplayWindow::new();
            let mut accepted = std::collections::BTreeSet::new();
            for seq in seqs {
                let highest = accepted.last().copied().unwrap_or(0);
                let expected = if seq == 0 {
                    Err(AuthError::ZeroSeq)
                } else if seq + REPLAY_WINDOW <= highest {
                    Err(AuthError::TooOld)
                } else if accepted.contains(&seq) {
                    Err(AuthError::Replayed)
                } else {
                    Ok(())
                };
                prop_assert_eq!(window.check(seq), expected.clone());
                prop_assert_eq!(window.check_and_accept(seq), expected.clone());
                if expected.is_ok() {
                    accepted.insert(seq);
                }
            }
        }
    }
}
