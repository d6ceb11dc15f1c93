//! Decoding an upload to 8-bit pixels, within the memory a job may use.
//!
//! A 16-bit PNG is decoded straight to 8 bits a channel (the PNG decoder's own `STRIP_16`,
//! row by row), so its pixels never stand in memory at 16 bits: an 8,000 × 6,000 RGBA image
//! takes 192 MB instead of 384 MB, and the variants are 8-bit JPEG and WebP anyway. The other
//! formats decode to 8 bits already. Either way the result is RGB, or RGBA when the image
//! has an alpha channel, as [`Pixels`].

use crate::{Inspected, Kind, Refused};
use image::metadata::Orientation;
use image::{DynamicImage, ImageBuffer, ImageDecoder, ImageReader, RgbImage, RgbaImage};
use std::io::Cursor;

/// Decoded pixels, 8 bits a channel.
pub(crate) enum Pixels {
    /// No alpha channel.
    Rgb(RgbImage),
    /// With its alpha channel.
    Rgba(RgbaImage),
}

/// An upload's pixels and how they are to be turned upright.
pub(crate) struct Decoded {
    /// The pixels as stored.
    pub(crate) pixels: Pixels,
    /// The EXIF orientation, if the image has one.
    pub(crate) orientation: Orientation,
}

fn unreadable(e: impl std::fmt::Display) -> Refused {
    Refused::Unreadable(e.to_string())
}

/// What a job may take: `total` bytes, of which `beside(orientation)` go to what is made
/// from the decoded pixels.
pub(crate) struct Budget<F: Fn(Orientation) -> u64> {
    /// The most the whole job may take.
    pub(crate) total: u64,
    /// What making the variants takes beside the decoded pixels, by orientation.
    pub(crate) beside: F,
}

impl<F: Fn(Orientation) -> u64> Budget<F> {
    /// Refuses an image whose decoding takes `decoding` bytes, turned by `orientation`.
    fn check(&self, decoding: u64, orientation: Orientation) -> Result<(), Refused> {
        let needs = decoding + (self.beside)(orientation);
        if needs > self.total {
            return Err(Refused::TooLarge {
                needs_mib: needs.div_ceil(1 << 20),
                max_mib: self.total >> 20,
            });
        }
        Ok(())
    }
}

/// Decodes an upload [`crate::inspect`] accepted as `found`, refusing it, before any pixel
/// is decoded, when the job would take more than its `budget`.
pub(crate) fn decode<F: Fn(Orientation) -> u64>(
    bytes: &[u8],
    found: &Inspected,
    budget: &Budget<F>,
) -> Result<Decoded, Refused> {
    match found.kind {
        Kind::Png => decode_png(bytes, budget),
        _ => decode_other(bytes, found, budget),
    }
}

/// The bytes a conversion from `channels` to RGB or RGBA holds at once: the new buffer
/// beside the old, or nothing when none is needed.
fn conversion(pixels: u64, channels: u64) -> u64 {
    match channels {
        1 => pixels * 3,
        2 => pixels * 4,
        _ => 0,
    }
}

fn decode_png<F: Fn(Orientation) -> u64>(
    bytes: &[u8],
    budget: &Budget<F>,
) -> Result<Decoded, Refused> {
    let limits = png::Limits {
        bytes: usize::try_from(budget.total).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(unreadable)?;
    let orientation = reader
        .info()
        .exif_metadata
        .as_deref()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let (color, _) = reader.output_color_type();
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| unreadable("its pixels do not fit in memory"))?;
    let (width, height) = reader.info().size();
    let pixels = u64::from(width) * u64::from(height);
    budget.check(
        size as u64 + conversion(pixels, color.samples() as u64),
        orientation,
    )?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(unreadable)?;
    buf.truncate(frame.buffer_size());
    let cut = || unreadable("its pixels end early");
    let pixels = match frame.color_type {
        png::ColorType::Rgb => {
            Pixels::Rgb(ImageBuffer::from_raw(width, height, buf).ok_or_else(cut)?)
        }
        png::ColorType::Rgba => {
            Pixels::Rgba(ImageBuffer::from_raw(width, height, buf).ok_or_else(cut)?)
        }
        png::ColorType::Grayscale => Pixels::Rgb(
            DynamicImage::ImageLuma8(ImageBuffer::from_raw(width, height, buf).ok_or_else(cut)?)
                .into_rgb8(),
        ),
        png::ColorType::GrayscaleAlpha => Pixels::Rgba(
            DynamicImage::ImageLumaA8(ImageBuffer::from_raw(width, height, buf).ok_or_else(cut)?)
                .into_rgba8(),
        ),
        // EXPAND turns a palette into RGB or RGBA
        png::ColorType::Indexed => return Err(unreadable("its palette was not expanded")),
    };
    Ok(Decoded {
        pixels,
        orientation,
    })
}

fn decode_other<F: Fn(Orientation) -> u64>(
    bytes: &[u8],
    found: &Inspected,
    budget: &Budget<F>,
) -> Result<Decoded, Refused> {
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), found.kind.format())
        .into_decoder()
        .map_err(unreadable)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(found.width);
    limits.max_image_height = Some(found.height);
    limits.max_alloc = Some(budget.total);
    decoder.set_limits(limits).map_err(unreadable)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let color = decoder.color_type();
    let pixels = u64::from(found.width) * u64::from(found.height);
    budget.check(
        decoder.total_bytes() + conversion(pixels, u64::from(color.channel_count())),
        orientation,
    )?;
    let img = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    let pixels = if color.has_alpha() {
        Pixels::Rgba(img.into_rgba8())
    } else {
        Pixels::Rgb(img.into_rgb8())
    };
    Ok(Decoded {
        pixels,
        orientation,
    })
}
