// The y axis of a bar chart: 0, the middle and the top, in whole units —
// requests for the count charts, micro-dollars (the API's smallest amount)
// for the cost ones — so that no two ticks read the same: with a cost of
// $0.000001 the axis is $0, $0.000001, $0.000002. Pure, for the unit test.

/** 1, 2, 2.5, 5 or 10 times a power of ten, at least `value` (> 0). */
function niceCeil(value: number): number {
  const power = 10 ** Math.floor(Math.log10(value));
  const f = value / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * power;
}

/**
 * The ticks for values up to `max`, ascending, the last one the top: counts
 * (`integer`) or USD. The top is at least 2 units; an empty cost chart gets
 * $0.01. A middle tick that is not a whole unit is left out.
 */
export function axis(max: number, integer: boolean): number[] {
  const unit = integer ? 1 : 1_000_000;
  // Rounded up, less a hair so that 0.05 × 10⁶ = 50000.000000000007 stays 50000.
  const units = max > 0 ? Math.ceil(max * unit - 1e-6) : integer ? 1 : 10_000;
  const top = Math.max(2, Math.ceil(niceCeil(Math.max(1, units))));
  return [0, top / 2, top].filter(Number.isInteger).map((t) => t / unit);
}
