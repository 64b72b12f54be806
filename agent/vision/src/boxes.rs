//! Boxes in an image's pixels (faces and plates alike) and their suppression.

use opencv::core::Rect;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FaceBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
}

impl FaceBox {
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }
    /// The shorter side: what decides whether a face is "of N px" (tests, mask judging).
    pub fn shorter_side(&self) -> f32 {
        self.width().min(self.height())
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    /// The area shared with `o`.
    pub fn intersection(&self, o: &FaceBox) -> f32 {
        let w = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let h = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        w * h
    }
    pub fn iou(&self, o: &FaceBox) -> f32 {
        let inter = self.intersection(o);
        let union = self.area() + o.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
    /// The box grown by `factor` around its centre and clipped to a `w` x `h` image, as whole
    /// pixels; None when nothing of it is inside.
    pub fn grown_rect(&self, factor: f32, w: i32, h: i32) -> Option<Rect> {
        self.rect_around(self.width() * factor, self.height() * factor, w, h)
    }

    /// A square of side `factor` x the box's longer side around its centre, clipped likewise.
    pub fn grown_square(&self, factor: f32, w: i32, h: i32) -> Option<Rect> {
        let side = self.width().max(self.height()) * factor;
        self.rect_around(side, side, w, h)
    }

    /// A `width` x `height` rectangle around the box's centre, clipped to a `w` x `h` image.
    pub fn rect_around(&self, width: f32, height: f32, w: i32, h: i32) -> Option<Rect> {
        let (cx, cy) = ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0);
        let (hw, hh) = (width / 2.0, height / 2.0);
        let x1 = ((cx - hw).floor() as i32).clamp(0, w);
        let y1 = ((cy - hh).floor() as i32).clamp(0, h);
        let x2 = ((cx + hw).ceil() as i32).clamp(0, w);
        let y2 = ((cy + hh).ceil() as i32).clamp(0, h);
        (x2 > x1 && y2 > y1).then(|| Rect::new(x1, y1, x2 - x1, y2 - y1))
    }
    pub fn from_array(b: [f32; 4], score: f32) -> FaceBox {
        FaceBox {
            x1: b[0],
            y1: b[1],
            x2: b[2],
            y2: b[3],
            score,
        }
    }
    pub fn as_array(&self) -> [f32; 4] {
        [self.x1, self.y1, self.x2, self.y2]
    }
}

/// Greedy non-maximum suppression: best first, drop what overlaps a kept box by more than `iou`.
pub fn nms(mut boxes: Vec<FaceBox>, iou: f32) -> Vec<FaceBox> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<FaceBox> = Vec::with_capacity(boxes.len());
    for b in boxes {
        if kept.iter().all(|k| k.iou(&b) <= iou) {
            kept.push(b);
        }
    }
    kept
}
