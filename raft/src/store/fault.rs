//! A deliberately broken store, for showing that the chaos suite catches one
//! (`chaos-tests/tests/docker.rs`, `SLUICE_CHAOS_FAULT`). Debug builds only: in a
//! release build [`Faults`] is an empty type whose checks are constant `false`,
//! and `SLUICE_FAULT` is never read.
//!
//! `SLUICE_FAULT` (read once, when the store opens):
//! - `skip-flush`: log appends are acknowledged to openraft without an fsync, and
//!   sled's background flush is off, so an acknowledged entry sits in memory until
//!   a vote, truncate, purge or snapshot happens to flush it. A node killed
//!   meanwhile forgets entries it counted towards a commit quorum.
//! - `drop-apply` or `drop-apply:N` (N ≥ 2, default 25): the state machine skips
//!   the command of every normal entry whose log index is a multiple of N, yet
//!   reports it applied: the write is acknowledged and is on no node.
//! - `fail-append:N` (N ≥ 1): appending a log entry whose index is N or above
//!   fails as a disk write error would (nothing written). openraft stops the
//!   node's Raft core on it; the node must say so (`/ready`).

#[cfg(debug_assertions)]
mod imp {
    /// What is broken, as `SLUICE_FAULT` said when the store opened.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Faults {
        skip_flush: bool,
        /// Skip the command of normal entries whose index is a multiple of this.
        drop_every: Option<u64>,
        /// Fail appends of entries from this index on.
        fail_append_from: Option<u64>,
    }

    impl Faults {
        pub fn from_env() -> Faults {
            let Ok(v) = std::env::var("SLUICE_FAULT") else {
                return Faults::default();
            };
            let faults = Faults::parse(&v);
            if faults == Faults::default() {
                tracing::warn!(
                    value = %v,
                    "SLUICE_FAULT not understood (skip-flush, drop-apply[:N], fail-append:N); store is not broken"
                );
            } else {
                tracing::warn!(
                    fault = %v,
                    "SLUICE_FAULT: this raft store is deliberately broken (debug builds only)"
                );
            }
            faults
        }

        pub fn parse(v: &str) -> Faults {
            let mut f = Faults::default();
            for part in v.split(',').map(str::trim) {
                match part.split_once(':') {
                    None if part == "skip-flush" => f.skip_flush = true,
                    None if part == "drop-apply" => f.drop_every = Some(25),
                    Some(("drop-apply", n)) => {
                        f.drop_every = n.parse().ok().filter(|n: &u64| *n >= 2)
                    }
                    Some(("fail-append", n)) => {
                        f.fail_append_from = n.parse().ok().filter(|n: &u64| *n >= 1)
                    }
                    _ => {}
                }
            }
            f
        }

        pub fn skip_flush(&self) -> bool {
            self.skip_flush
        }

        pub fn drop_apply(&self, index: u64) -> bool {
            self.drop_every.is_some_and(|n| index.is_multiple_of(n))
        }

        pub fn fail_append(&self, index: u64) -> bool {
            self.fail_append_from.is_some_and(|n| index >= n)
        }
    }
}

#[cfg(not(debug_assertions))]
mod imp {
    /// Release builds cannot be broken on purpose: nothing to read, nothing to check.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Faults;

    impl Faults {
        #[inline(always)]
        pub fn from_env() -> Faults {
            Faults
        }

        #[inline(always)]
        pub fn skip_flush(&self) -> bool {
            false
        }

        #[inline(always)]
        pub fn drop_apply(&self, _index: u64) -> bool {
            false
        }

        #[inline(always)]
        pub fn fail_append(&self, _index: u64) -> bool {
            false
        }
    }
}

pub use imp::Faults;

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::Faults;

    #[test]
    fn parses_the_switch() {
        assert_eq!(Faults::parse(""), Faults::default());
        assert_eq!(Faults::parse("nonsense"), Faults::default());
        assert!(Faults::parse("skip-flush").skip_flush());
        assert!(!Faults::parse("skip-flush").drop_apply(25));
        let d = Faults::parse("drop-apply");
        assert!(d.drop_apply(25) && d.drop_apply(50) && !d.drop_apply(26));
        let d = Faults::parse("drop-apply:3, skip-flush");
        assert!(d.drop_apply(3) && !d.drop_apply(4) && d.skip_flush());
        assert_eq!(Faults::parse("drop-apply:1"), Faults::default());
        let f = Faults::parse("fail-append:7");
        assert!(f.fail_append(7) && f.fail_append(8) && !f.fail_append(6));
        assert_eq!(Faults::parse("fail-append:0"), Faults::default());
    }
}

#[cfg(all(test, not(debug_assertions)))]
mod release_tests {
    use super::Faults;

    /// `cargo test --release`: nothing to switch on, whatever the environment says.
    #[test]
    fn release_builds_cannot_be_broken() {
        assert_eq!(std::mem::size_of::<Faults>(), 0);
        let f = Faults::from_env();
        assert!(!f.skip_flush() && !f.drop_apply(25) && !f.fail_append(1));
    }
}
