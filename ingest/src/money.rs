//! Money as exact integer micro-dollars: sums never drift the way `f64` sums do.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// An amount of USD in millionths of a dollar (1 USD = 1 000 000 micros).
///
/// Serialised as a bare JSON integer, so events and projections stay exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Micros(i64);

impl Micros {
    pub const ZERO: Micros = Micros(0);
    pub const PER_DOLLAR: i64 = 1_000_000;

    pub const fn new(micros: i64) -> Self {
        Micros(micros)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Micros) -> Option<Micros> {
        self.0.checked_add(other.0).map(Micros)
    }
}

impl Add for Micros {
    type Output = Micros;
    /// Saturates rather than wrapping: a total pinned at the maximum is wrong
    /// in a visible way, a wrapped one silently turns negative.
    fn add(self, other: Micros) -> Micros {
        Micros(self.0.saturating_add(other.0))
    }
}

impl AddAssign for Micros {
    fn add_assign(&mut self, other: Micros) {
        *self = *self + other;
    }
}

impl Sub for Micros {
    type Output = Micros;
    /// Saturates, like addition (balances may go below zero).
    fn sub(self, other: Micros) -> Micros {
        Micros(self.0.saturating_sub(other.0))
    }
}

/// Formats as USD with six decimals, e.g. `1.250000`.
impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per = Self::PER_DOLLAR as u64;
        write!(f, "{sign}{}.{:06}", abs / per, abs % per)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_dollars_with_six_decimals() {
        assert_eq!(Micros::new(1_250_000).to_string(), "1.250000");
        assert_eq!(Micros::new(1).to_string(), "0.000001");
        assert_eq!(Micros::new(-2_000_001).to_string(), "-2.000001");
    }

    #[test]
    fn addition_saturates_instead_of_wrapping() {
        assert_eq!(Micros::new(i64::MAX) + Micros::new(1), Micros::new(i64::MAX));
        assert_eq!(Micros::new(i64::MAX).checked_add(Micros::new(1)), None);
    }
}
