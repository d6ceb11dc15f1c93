//! Images: checking an upload by its content ([`inspect`]) and making its variants
//! ([`variants`]).
//!
//! An upload is judged by its bytes, never its name: the format comes from the magic bytes,
//! and the size from the header, read before anything is decoded, so a decompression bomb
//! (a small file that claims 30,000 × 30,000 pixels) is refused without allocating for it.
//! The decoder runs with limits too, in case a header lies.
//!
//! Variants are JPEG at 64, 320 and 1280 pixels wide (never wider than the original) and
//! one at the original's full size, turned upright by the EXIF orientation, and re-encoded
//! from pixels, so no metadata of the original (EXIF, GPS position, camera serial) survives.
//! The uploaded bytes themselves are never shown to anyone: the full-size variant stands in
//! for them.
//!
//! An upload of a lossless kind (PNG, GIF: drawings, screenshots, logos) also gets its sized
//! variants as WebP. The encoder writes lossless WebP only, which is exact and smaller than
//! PNG for such images, but several times larger than JPEG for photographs: photographs get
//! JPEG alone ([`Kind::gets_webp`]).

mod decode;
mod upright;

use decode::Pixels;
use image::metadata::Orientation;
use image::{GenericImageView, ImageBuffer, ImageFormat, ImageReader, Pixel, PixelWithColorType};
use std::io::Cursor;
use upright::Upright;

/// The widths of the variants, in pixels.
pub const WIDTHS: [u32; 3] = [64, 320, 1280];

/// The [`Variant::name`] of the full-size variant.
pub const FULL: u32 = 0;

/// An image format uploads may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// WebP.
    WebP,
    /// GIF (its first frame).
    Gif,
}

impl Kind {
    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
            Kind::WebP => "image/webp",
            Kind::Gif => "image/gif",
        }
    }

    /// Whether variants of this kind are made as (lossless) WebP too.
    pub fn gets_webp(self) -> bool {
        matches!(self, Kind::Png | Kind::Gif)
    }

    /// The kind with MIME type `mime`.
    pub fn from_mime(mime: &str) -> Option<Kind> {
        [Kind::Jpeg, Kind::Png, Kind::WebP, Kind::Gif]
            .into_iter()
            .find(|k| k.mime() == mime)
    }

    fn format(self) -> ImageFormat {
        match self {
            Kind::Jpeg => ImageFormat::Jpeg,
            Kind::Png => ImageFormat::Png,
            Kind::WebP => ImageFormat::WebP,
            Kind::Gif => ImageFormat::Gif,
        }
    }
}

/// The MIME type of an image, by its magic bytes; `None` for anything else.
pub fn mime_of(bytes: &[u8]) -> Option<&'static str> {
    Some(match image::guess_format(bytes).ok()? {
        ImageFormat::Jpeg => Kind::Jpeg.mime(),
        ImageFormat::Png => Kind::Png.mime(),
        ImageFormat::WebP => Kind::WebP.mime(),
        ImageFormat::Gif => Kind::Gif.mime(),
        _ => return None,
    })
}

/// What an upload is, by its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inspected {
    /// Its format.
    pub kind: Kind,
    /// Width in pixels, as stored (before any EXIF rotation).
    pub width: u32,
    /// Height in pixels, as stored.
    pub height: u32,
}

/// Why an image is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// Not JPEG, PNG, WebP or GIF by its content.
    #[error("not an image of a supported type (JPEG, PNG, WebP or GIF)")]
    Type,
    /// The header or the pixels cannot be read (a truncated or damaged file).
    #[error("the image cannot be read: {0}")]
    Unreadable(String),
    /// More pixels than allowed.
    #[error("the image has {width} × {height} pixels, more than the {max} allowed")]
    TooManyPixels {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The bound on width × height.
        max: u64,
    },
    /// Making its variants would take more memory than a job may use ([`JOB_MEMORY`]).
    #[error(
        "processing it would take about {needs_mib} MiB, more than the {max_mib} MiB a job may use"
    )]
    TooLarge {
        /// About how much it would take, in MiB.
        needs_mib: u64,
        /// The most a job may take, in MiB.
        max_mib: u64,
    },
}

/// Checks an upload: a supported format by its magic bytes, a readable header, and at most
/// `max_pixels` pixels. Decodes no pixels.
///
/// # Errors
/// [`Refused`], saying why.
pub fn inspect(bytes: &[u8], max_pixels: u64) -> Result<Inspected, Refused> {
    let kind = match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => Kind::Jpeg,
        Ok(ImageFormat::Png) => Kind::Png,
        Ok(ImageFormat::WebP) => Kind::WebP,
        Ok(ImageFormat::Gif) => Kind::Gif,
        _ => return Err(Refused::Type),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    // only the header is read here; the pixel bound below is the limit that matters
    reader.no_limits();
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| Refused::Unreadable(e.to_string()))?;
    if width == 0 || height == 0 {
        return Err(Refused::Unreadable("it has no pixels".into()));
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(Refused::TooManyPixels {
            width,
            height,
            max: max_pixels,
        });
    }
    Ok(Inspected {
        kind,
        width,
        height,
    })
}

/// One variant.
#[derive(Clone, Debug)]
pub struct Variant {
    /// The width it was made for (one of [`WIDTHS`], or [`FULL`]); the image may be narrower.
    pub name: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The JPEG bytes.
    pub jpeg: Vec<u8>,
    /// The lossless WebP bytes, for a sized variant of a kind that [`Kind::gets_webp`].
    pub webp: Option<Vec<u8>>,
}

/// The most memory one job may take to make an upload's variants, in bytes: the decoded
/// pixels, the largest resized copy and the full-size JPEG together. An image that would
/// need more is refused with [`Refused::TooLarge`] before its pixels are decoded.
pub const JOB_MEMORY: u64 = 256 << 20;

/// Makes the variants of an upload: upright, at each of [`WIDTHS`] (at most the original's
/// width) and at full size ([`FULL`], last), as JPEG without metadata, and the sized ones as
/// WebP too when the kind [`Kind::gets_webp`]. CPU-bound: run it on a blocking thread.
///
/// Memory stays within [`JOB_MEMORY`]: the pixels are decoded once, at 8 bits a channel,
/// and every variant is read from them through an upright view ([`upright::Upright`])
/// rather than from a turned or converted copy.
///
/// # Errors
/// [`Refused`] when the upload fails [`inspect`], its pixels cannot be decoded, or making
/// its variants would take more than [`JOB_MEMORY`].
pub fn variants(bytes: &[u8], max_pixels: u64) -> Result<Vec<Variant>, Refused> {
    variants_within(bytes, max_pixels, JOB_MEMORY)
}

/// [`variants`] with `job_memory` bytes at the most.
fn variants_within(
    bytes: &[u8],
    max_pixels: u64,
    job_memory: u64,
) -> Result<Vec<Variant>, Refused> {
    let found = inspect(bytes, max_pixels)?;
    let budget = decode::Budget {
        total: job_memory,
        beside: |orientation| beside_pixels(found.width, found.height, orientation),
    };
    let decoded = decode::decode(bytes, &found, &budget)?;
    match &decoded.pixels {
        Pixels::Rgb(img) => make(img, decoded.orientation, found.kind),
        Pixels::Rgba(img) => make(img, decoded.orientation, found.kind),
    }
}

/// What making the variants of a `width` × `height` image turned by `orientation` takes
/// beside its decoded pixels: the largest resized copy (at most four bytes a pixel; as large
/// as the image when it is no wider than [`WIDTHS`]' largest) and the full-size JPEG (about
/// a byte a pixel at most).
fn beside_pixels(width: u32, height: u32, orientation: Orientation) -> u64 {
    let (w, h) = (u64::from(width), u64::from(height));
    let (w, h) = if upright::swaps_sides(orientation) {
        (h, w)
    } else {
        (w, h)
    };
    let widest = WIDTHS.iter().copied().max().map_or(w, u64::from).min(w);
    let copy = widest * (h * widest / w).max(1) * 4;
    copy + w * h
}

/// The variants of the decoded `img`, turned by `orientation`.
fn make<P>(
    img: &ImageBuffer<P, Vec<u8>>,
    orientation: Orientation,
    kind: Kind,
) -> Result<Vec<Variant>, Refused>
where
    P: Pixel<Subpixel = u8> + PixelWithColorType + 'static,
{
    let upright = Upright::new(img, orientation);
    let (full_width, full_height) = upright.dimensions();
    let mut out = Vec::with_capacity(WIDTHS.len() + 1);
    for name in WIDTHS.into_iter().chain([FULL]) {
        let width = if name == FULL {
            full_width
        } else {
            name.min(full_width)
        };
        let height = ((u64::from(full_height) * u64::from(width) + u64::from(full_width) / 2)
            / u64::from(full_width))
        .max(1) as u32;
        let (jpeg, webp) = if name == FULL {
            // straight from the decoded pixels: the encoder reads them block by block
            (jpeg_of(&upright)?, None)
        } else {
            let small = image::imageops::thumbnail(&upright, width, height);
            let webp = if kind.gets_webp() {
                // with its alpha channel: a transparent logo stays transparent
                let mut webp = Vec::new();
                image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
                    .encode(small.as_raw(), width, height, P::COLOR_TYPE)
                    .map_err(|e| Refused::Unreadable(e.to_string()))?;
                Some(webp)
            } else {
                None
            };
            (jpeg_of(&small)?, webp)
        };
        out.push(Variant {
            name,
            width,
            height,
            jpeg,
            webp,
        });
    }
    Ok(out)
}

/// `img` as a JPEG of quality 82, without metadata (an alpha channel is dropped).
fn jpeg_of<I>(img: &I) -> Result<Vec<u8>, Refused>
where
    I: GenericImageView,
    I::Pixel: PixelWithColorType,
{
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 82)
        .encode_image(img)
        .map_err(|e| Refused::Unreadable(e.to_string()))?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn types_come_from_the_content() {
        let p = png(10, 5);
        assert_eq!(
            inspect(&p, 1000).unwrap(),
            Inspected {
                kind: Kind::Png,
                width: 10,
                height: 5
            }
        );
        assert!(
            matches!(inspect(b"GIF89a", 1000), Err(Refused::Unreadable(_))),
            "a header cut short"
        );
        assert_eq!(
            inspect(b"<svg xmlns='http://www.w3.org/2000/svg'/>", 1000),
            Err(Refused::Type)
        );
        assert_eq!(
            inspect(&p[..20], 1000).map_err(|e| matches!(e, Refused::Unreadable(_))),
            Err(true)
        );
        assert!(matches!(
            inspect(&p, 49),
            Err(Refused::TooManyPixels {
                width: 10,
                height: 5,
                max: 49
            })
        ));
    }

    #[test]
    fn variants_are_never_wider_than_the_original_and_keep_its_shape() {
        let v = variants(&png(400, 200), 1_000_000).unwrap();
        let sizes: Vec<(u32, u32, u32)> = v.iter().map(|v| (v.name, v.width, v.height)).collect();
        assert_eq!(
            sizes,
            [
                (64, 64, 32),
                (320, 320, 160),
                (1280, 400, 200),
                (FULL, 400, 200)
            ]
        );
        for v in &v {
            let back = image::load_from_memory_with_format(&v.jpeg, ImageFormat::Jpeg).unwrap();
            assert_eq!((back.width(), back.height()), (v.width, v.height));
        }
    }

    #[test]
    fn an_image_that_would_take_more_than_a_job_may_is_refused_before_decoding() {
        let p = png(400, 200);
        // 400 × 200 at 8-bit RGB is 240 kB; its 400 px copy 320 kB and its JPEG about 80 kB
        assert!(variants_within(&p, 1_000_000, 2 << 20).is_ok());
        assert_eq!(
            variants_within(&p, 1_000_000, 512 << 10).map(|v| v.len()),
            Err(Refused::TooLarge {
                needs_mib: 1,
                max_mib: 0
            })
        );
    }

    #[test]
    fn lossless_uploads_get_exact_webp_variants_and_photographs_none() {
        let v = variants(&png(400, 200), 1_000_000).unwrap();
        for v in &v {
            match (&v.webp, v.name) {
                (None, FULL) => {}
                (Some(webp), _) => {
                    assert_eq!(mime_of(webp), Some("image/webp"));
                    let back =
                        image::load_from_memory_with_format(webp, ImageFormat::WebP).unwrap();
                    assert_eq!((back.width(), back.height()), (v.width, v.height));
                    if v.width == 400 {
                        // not resized: lossless means every pixel as uploaded
                        let want = image::load_from_memory(&png(400, 200)).unwrap().to_rgba8();
                        assert!(back.to_rgba8() == want, "lossless WebP keeps every pixel");
                    }
                }
                (None, name) => panic!("no WebP for the {name} px variant of a PNG"),
            }
        }
        let rgb =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 9]));
        let mut jpeg = Cursor::new(Vec::new());
        rgb.write_to(&mut jpeg, ImageFormat::Jpeg).unwrap();
        let v = variants(jpeg.get_ref(), 1_000_000).unwrap();
        assert!(
            v.iter().all(|v| v.webp.is_none()),
            "a photograph gets JPEG only"
        );
    }
}
