//! The memory one variants job adds to a process ([`rss::peak_growth`]). Alone in its test
//! binary, so no other test's memory counts.

#[path = "support/png16.rs"]
mod png16;
#[path = "support/rss.rs"]
mod rss;

#[test]
fn a_sixteen_bit_png_costs_about_its_pixels_at_eight_bits() {
    let (width, height) = (3000u32, 2000u32);
    let png = png16::png16(width, height);
    let (made, grew) = rss::peak_growth(|| crescendo_media::variants(&png, 50_000_000).unwrap());
    assert_eq!(made.len(), 4);
    let pixels = u64::from(width * height);
    // the decoded pixels at 8-bit RGBA are 4 bytes each; at 16 bits (as decoded before)
    // they alone were 8, and the full-size copies added 11 more
    assert!(
        grew < pixels * 6,
        "one job grew the peak resident set by {} MiB for {} megapixels",
        grew >> 20,
        pixels / 1_000_000
    );
}
