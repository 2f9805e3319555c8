//! PNG encoding of the images the CLI draws (charts, attention overlays).

use image::RgbImage;

/// PNG bytes of an image.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    Ok(bytes.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_encodes_as_png() {
        let img = RgbImage::from_pixel(3, 2, image::Rgb([1, 2, 3]));
        let png = encode_png(&img).expect("encodes");
        assert!(png.starts_with(&[0x89, b'P', b'N', b'G']));
        let back = image::load_from_memory(&png).expect("decodes").to_rgb8();
        assert_eq!(back, img);
    }
}
