//! USD amounts at the HTTP edge: JSON numbers with at most 6 decimals,
//! exact micro-dollars inside.

use ingest::Micros;

use crate::error::ApiError;

/// The largest amount accepted: far above any budget, far below where f64
/// stops representing micro-dollars exactly.
const MAX_MICROS: i64 = 1_000_000_000 * Micros::PER_DOLLAR;

/// Parses a non-negative USD amount with at most 6 decimals, exactly.
pub fn parse(field: &str, value: f64) -> Result<Micros, ApiError> {
    let invalid = || {
        ApiError::validation(format!(
            "{field} must be a non-negative USD amount with at most 6 decimals, up to 1e9"
        ))
    };
    if !value.is_finite() || value < 0.0 {
        return Err(invalid());
    }
    // The shortest decimal that round-trips is exactly what the client wrote
    // (for any number they could mean), so count its decimals as text.
    let text = format!("{value}");
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if fraction.len() > 6 || text.contains('e') {
        return Err(invalid());
    }
    let whole: i64 = whole.parse().map_err(|_| invalid())?;
    let fraction: i64 = format!("{fraction:0<6}").parse().map_err(|_| invalid())?;
    let micros = whole
        .checked_mul(Micros::PER_DOLLAR)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(invalid)?;
    if micros > MAX_MICROS {
        return Err(invalid());
    }
    Ok(Micros::new(micros))
}

/// Rounds an amount an upstream reported to the nearest micro-dollar;
/// nonsense (negative, not finite) counts as unreported.
pub fn from_upstream(value: f64) -> Option<Micros> {
    (value.is_finite() && value >= 0.0 && value <= (MAX_MICROS / Micros::PER_DOLLAR) as f64)
        .then(|| Micros::new((value * Micros::PER_DOLLAR as f64).round() as i64))
}

/// The JSON number for an amount (exact: every micro-dollar amount up to
/// 2^53 has a shortest f64 form with its six decimals).
pub fn to_json(amount: Micros) -> f64 {
    amount.get() as f64 / Micros::PER_DOLLAR as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_up_to_six_decimals() {
        assert_eq!(parse("x", 0.1).unwrap(), Micros::new(100_000));
        assert_eq!(parse("x", 12.345678).unwrap(), Micros::new(12_345_678));
        assert_eq!(parse("x", 0.000001).unwrap(), Micros::new(1));
        assert_eq!(parse("x", 50.0).unwrap(), Micros::new(50_000_000));
        for bad in [-0.01, 0.0000001, 1.2345678, f64::NAN, f64::INFINITY, 2e9] {
            assert!(parse("x", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn round_trips_through_json_numbers() {
        for micros in [0, 1, 2500, 100_000, 12_345_678, 999_999_999_999] {
            let amount = Micros::new(micros);
            assert_eq!(parse("x", to_json(amount)).unwrap(), amount);
        }
    }
}
