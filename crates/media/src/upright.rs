//! [`Upright`]: an image seen turned upright by its EXIF orientation, without a copy.
//!
//! Turning a 48-megapixel image by a quarter takes a second buffer as large as the first;
//! reading each pixel from where the orientation says it is takes none. The resizer and the
//! JPEG encoder both read pixels through [`GenericImageView`], so they take this view as
//! they would take the turned image.

use image::metadata::Orientation;
use image::{GenericImageView, ImageBuffer, Pixel};

/// `image` as it looks once `orientation` is applied.
pub(crate) struct Upright<'a, P: Pixel> {
    image: &'a ImageBuffer<P, Vec<P::Subpixel>>,
    orientation: Orientation,
}

impl<'a, P: Pixel> Upright<'a, P> {
    /// The view of `image` turned by `orientation`.
    pub(crate) fn new(
        image: &'a ImageBuffer<P, Vec<P::Subpixel>>,
        orientation: Orientation,
    ) -> Self {
        Upright { image, orientation }
    }
}

/// Whether `orientation` swaps width and height.
pub(crate) fn swaps_sides(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

impl<P: Pixel> GenericImageView for Upright<'_, P> {
    type Pixel = P;

    fn dimensions(&self) -> (u32, u32) {
        let (w, h) = self.image.dimensions();
        if swaps_sides(self.orientation) {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// The pixel at (`x`, `y`) of the upright image: where it is in the stored one.
    fn get_pixel(&self, x: u32, y: u32) -> P {
        let (w, h) = self.image.dimensions();
        let (sx, sy) = match self.orientation {
            Orientation::NoTransforms => (x, y),
            Orientation::FlipHorizontal => (w - 1 - x, y),
            Orientation::FlipVertical => (x, h - 1 - y),
            Orientation::Rotate180 => (w - 1 - x, h - 1 - y),
            // a quarter turn clockwise: the upright top row is the stored left column, read
            // from the bottom up
            Orientation::Rotate90 => (y, h - 1 - x),
            Orientation::Rotate270 => (w - 1 - y, x),
            // transpose: rows become columns
            Orientation::Rotate90FlipH => (y, x),
            // transverse
            Orientation::Rotate270FlipH => (w - 1 - y, h - 1 - x),
        };
        *self.image.get_pixel(sx, sy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, Rgb, RgbImage};

    #[test]
    fn the_view_shows_what_turning_the_image_makes() {
        let stored = RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8, y as u8, (x * 7 + y) as u8]));
        for orientation in [
            Orientation::NoTransforms,
            Orientation::FlipHorizontal,
            Orientation::FlipVertical,
            Orientation::Rotate180,
            Orientation::Rotate90,
            Orientation::Rotate270,
            Orientation::Rotate90FlipH,
            Orientation::Rotate270FlipH,
        ] {
            let mut turned = DynamicImage::ImageRgb8(stored.clone());
            turned.apply_orientation(orientation);
            let turned = turned.to_rgb8();
            let view = Upright::new(&stored, orientation);
            assert_eq!(view.dimensions(), turned.dimensions(), "{orientation:?}");
            for (x, y, p) in turned.enumerate_pixels() {
                assert_eq!(view.get_pixel(x, y), *p, "{orientation:?} at ({x}, {y})");
            }
        }
    }
}
