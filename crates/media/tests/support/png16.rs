//! A 16-bit RGBA PNG that is small on disk and large in memory, as an attacker's would be.
//! Shared by the memory test and the memory benchmark.

use image::{ImageBuffer, ImageFormat, Rgba};
use std::io::Cursor;

/// A `width` × `height` 16-bit RGBA PNG of flat 64 × 64 blocks: the file stays small, the
/// pixels do not.
pub fn png16(width: u32, height: u32) -> Vec<u8> {
    let img = ImageBuffer::<Rgba<u16>, _>::from_fn(width, height, |x, y| {
        let (bx, by) = ((x / 64) as u16, (y / 64) as u16);
        Rgba([bx * 500, by * 650, (bx + by) * 250, u16::MAX - by * 300])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .expect("PNG encoding");
    out.into_inner()
}
