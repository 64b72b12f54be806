//! Privacy zones (`fogd_vision_proto::zones`) applied to a frame: each polygon filled black,
//! before the detector sees the frame and before anything of it is written.

use opencv::core::{Mat, Point, Scalar, Vector};
use opencv::imgproc;
use opencv::prelude::*;

pub use fogd_vision_proto::zones::{CameraZones, Zone, ZoneError, ENV_ZONES};

use super::{Result, VisionError};

/// Blacks out every zone of `zones` in `img`; Err (the frame must not be written) when one
/// cannot be drawn.
pub fn black_out(img: &mut Mat, zones: &[Zone]) -> Result<()> {
    if zones.is_empty() {
        return Ok(());
    }
    let (w, h) = (img.cols(), img.rows());
    if w <= 0 || h <= 0 {
        return Err(VisionError::Other("privacy zones: an empty frame".into()));
    }
    for (i, z) in zones.iter().enumerate() {
        z.check(i).map_err(|e| VisionError::Other(e.to_string()))?;
        // Corners to pixels, rounded outwards by the outline drawn below.
        let pts: Vector<Point> = z
            .points
            .iter()
            .map(|[x, y]| Point::new((x * w as f64).round() as i32, (y * h as f64).round() as i32))
            .collect();
        let polys: Vector<Vector<Point>> = std::iter::once(pts).collect();
        let black = Scalar::all(0.0);
        imgproc::fill_poly(img, &polys, black, imgproc::LINE_8, 0, Point::new(0, 0))
            .and_then(|()| imgproc::polylines(img, &polys, true, black, 2, imgproc::LINE_8, 0))
            .map_err(|e| VisionError::Other(format!("privacy zone {}: {e}", z.label(i))))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Rect, CV_8UC3};

    /// fogd reads the zones applied out of a frame's report through the proto's view of it.
    #[test]
    fn the_report_says_the_zones_in_the_fields_fogd_reads() {
        let report = crate::report::FrameReport {
            source: "in.jpg".into(),
            frame: None,
            timestamp_s: None,
            width: 2,
            height: 2,
            detector: "centerface".into(),
            backend: "ort".into(),
            status: "ok".into(),
            faces: Vec::new(),
            plates: vec![crate::report::PlateReport {
                bbox: [0.0, 1.0, 2.0, 2.0],
                score: 0.9,
            }],
            counts: Default::default(),
            zones: 2,
            models: vec![fogd_vision_proto::receipt::ModelRef {
                name: "centerface.onnx".into(),
                sha256: "26b1".into(),
            }],
            thresholds: Some(fogd_vision_proto::receipt::Thresholds {
                redact: 0.1,
                count: 0.2,
                plates: Some(0.3),
                scale: Some(960),
                fine_scale: Some(1920),
                grow: Some(1.3),
            }),
            audit: Some(fogd_vision_proto::receipt::Audit {
                detector: "ultraface".into(),
                faces_left: 1,
            }),
            mask_status: None,
            timings_ms: None,
        };
        let note = serde_json::to_vec(&report).expect("json");
        let jpeg = crate::jpeg_note::embed(&[0xFF, 0xD8, 0xFF, 0xD9], &note).expect("embed");
        let seen = fogd_vision_proto::ReportPrivacy::of_jpeg(&jpeg).expect("read");
        assert_eq!((seen.status.as_str(), seen.zones), ("ok", 2));
        assert_eq!((seen.models, seen.thresholds), (report.models, report.thresholds));
        assert_eq!(seen.audit, report.audit);
        assert_eq!(seen.plates.len(), 1);
    }

    #[test]
    fn a_zone_is_black_to_its_edges_and_nothing_else_is() {
        let mut img = Mat::new_rows_cols_with_default(100, 200, CV_8UC3, Scalar::all(200.0)).expect("mat");
        let zone = Zone {
            name: None,
            points: vec![[0.25, 0.2], [0.5, 0.2], [0.5, 0.6], [0.25, 0.6]],
        };
        black_out(&mut img, &[zone]).expect("drawn");
        // x 50..100, y 20..60 is black, all of it.
        let inside = Mat::roi(&img, Rect::new(50, 20, 51, 41)).expect("roi");
        let (mut min, mut max) = (0.0, 0.0);
        opencv::core::min_max_loc(
            &inside.reshape(1, 0).expect("gray"),
            Some(&mut min),
            Some(&mut max),
            None,
            None,
            &opencv::core::no_array(),
        )
        .expect("minmax");
        assert_eq!(max, 0.0);
        // A few pixels away, untouched.
        for (x, y) in [(45, 40), (106, 40), (75, 14), (75, 66)] {
            let px = img.at_2d::<opencv::core::Vec3b>(y, x).expect("px");
            assert_eq!(px.0, [200, 200, 200], "({x},{y})");
        }
    }
}
