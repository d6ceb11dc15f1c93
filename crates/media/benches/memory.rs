//! Peak memory of one image-variants job, by image: `cargo bench -p crescendo-media`.
//!
//! The figure is the growth of the process's peak resident memory (`VmHWM`, reset through
//! `/proc/self/clear_refs` before each image) while [`variants`] runs: what one job adds to a
//! worker. The images are made here:
//! smooth gradients, so a 48-megapixel PNG is a few hundred kilobytes, as an attacker's
//! would be.

#[path = "../tests/support/png16.rs"]
mod png16;
#[path = "../tests/support/rss.rs"]
mod rss;

use crescendo_media::variants;
use image::ImageFormat;
use png16::png16;
use std::io::Cursor;
use std::time::Instant;

const MIB: f64 = 1024.0 * 1024.0;

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x / 32) as u8, (y / 24) as u8, ((x ^ y) & 0xff) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn measure(what: &str, bytes: &[u8]) {
    let started = Instant::now();
    let (made, peak) = rss::peak_growth(|| variants(bytes, 50_000_000));
    let took = started.elapsed();
    let outcome = match made {
        Ok(v) => format!("{} variants", v.len()),
        Err(e) => format!("refused: {e}"),
    };
    println!(
        "{what:<44} {:>8.1} KiB file  peak {:>7.1} MiB  {:>6.2} s  {outcome}",
        bytes.len() as f64 / 1024.0,
        peak as f64 / MIB,
        took.as_secs_f64()
    );
}

fn main() {
    println!("peak resident memory one variants job adds (VmHWM growth)");
    measure("PNG 8000 x 6000, 16-bit RGBA", &png16(8000, 6000));
    measure("JPEG 8000 x 6000, 8-bit RGB", &jpeg(8000, 6000));
    measure("PNG 2000 x 1500, 16-bit RGBA", &png16(2000, 1500));
}
