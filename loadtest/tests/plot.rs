//! The latency plot: one curve per series, one step per value (no server needed).

mod common;

use shoal_loadtest::report::cdf_svg;

#[test]
fn one_curve_per_series_with_a_step_per_value() {
    let fast = [0.2, 0.05, 0.1];
    let slow: Vec<f64> = (1..=40).map(|i| f64::from(i) / 10.0).collect();
    let none: [f64; 0] = [];
    let svg = cdf_svg("test", &[("fast", &fast), ("slow", &slow), ("none", &none)]);
    common::assert_cdf_plot(&svg, &[("fast", 3), ("slow", 40), ("none", 0)]);
    // The slowest value is the right end of the x axis (with 5 % room): the slow curve
    // reaches further right than the fast one.
    let curves = common::curves(&svg);
    let right = |i: usize| {
        curves[i]
            .points
            .iter()
            .map(|p| p.0)
            .fold(f64::MIN, f64::max)
    };
    assert!(right(1) > right(0));
}

#[test]
fn the_checker_refuses_a_plot_missing_a_curve() {
    let a = [0.1, 0.2];
    let svg = cdf_svg("test", &[("a", &a)]);
    let missing = std::panic::catch_unwind(|| {
        common::assert_cdf_plot(&svg, &[("a", 2), ("b", 2)]);
    });
    assert!(missing.is_err());
    let short = std::panic::catch_unwind(|| common::assert_cdf_plot(&svg, &[("a", 3)]));
    assert!(short.is_err());
}
