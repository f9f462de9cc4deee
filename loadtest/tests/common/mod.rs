//! Reading back the SVG plots the load tester writes.

/// One `<polyline>` of a plot: its stroke color and its points.
#[derive(Debug)]
pub struct Curve {
    pub stroke: String,
    pub points: Vec<(f64, f64)>,
}

fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = element[start..].find('"')?;
    Some(&element[start..start + len])
}

/// Every `<polyline>` of `svg`, in order; panics on a malformed one (a test helper).
pub fn curves(svg: &str) -> Vec<Curve> {
    svg.split("<polyline")
        .skip(1)
        .map(|rest| {
            let element = &rest[..rest.find("/>").expect("an unclosed polyline")];
            let points = attr(element, "points")
                .expect("a polyline without points")
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').expect("a point is x,y");
                    (
                        x.parse().expect("x is a number"),
                        y.parse().expect("y is a number"),
                    )
                })
                .collect();
            Curve {
                stroke: attr(element, "stroke").unwrap_or_default().to_string(),
                points,
            }
        })
        .collect()
}

/// Checks that `svg` is a plot of cumulative distributions with one curve per entry of
/// `series` (its name and number of values), in that order: each curve a step function of
/// `2 n + 1` points rising from 0 % to 100 %, in a color of its own.
pub fn assert_cdf_plot(svg: &str, series: &[(&str, usize)]) {
    assert!(
        svg.starts_with("<svg") && svg.ends_with("</svg>"),
        "not an SVG document"
    );
    assert_eq!(svg.matches("<path").count(), 0, "curves are polylines");
    let curves = curves(svg);
    assert_eq!(
        curves.len(),
        series.len(),
        "one curve per series: {curves:?}"
    );
    for (c, (name, n)) in curves.iter().zip(series) {
        assert_eq!(c.points.len(), 2 * n + 1, "{name}: points of {n} values");
        assert!(
            svg.contains(&format!(">{name} (n={n})</text>")),
            "{name}: no legend"
        );
        assert!(
            c.points
                .windows(2)
                .all(|w| w[1].0 >= w[0].0 && w[1].1 <= w[0].1),
            "{name}: a CDF only moves right and up (SVG y grows downwards): {:?}",
            c.points
        );
    }
    let mut strokes: Vec<&str> = curves.iter().map(|c| c.stroke.as_str()).collect();
    strokes.sort_unstable();
    strokes.dedup();
    assert_eq!(strokes.len(), curves.len(), "each curve in its own color");
    // Every curve starts at 0 % and those with values end at 100 %: the same two heights.
    let bottom = curves.iter().map(|c| c.points[0].1).collect::<Vec<_>>();
    assert!(bottom.windows(2).all(|w| w[0] == w[1]), "{bottom:?}");
    let tops: Vec<f64> = curves
        .iter()
        .filter(|c| c.points.len() > 1)
        .filter_map(|c| c.points.last().map(|p| p.1))
        .collect();
    assert!(tops.windows(2).all(|w| w[0] == w[1]), "{tops:?}");
    assert!(tops.iter().all(|t| *t < bottom[0]));
}
