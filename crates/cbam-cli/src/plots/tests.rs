use super::*;

#[test]
fn the_embedded_font_draws_text() {
    let img = render(200, 60, |root| {
        drawing(root.draw(&Text::new("Ankle boot", (10, 20), (FONT, 20))))
    })
    .expect("draws");
    let inked = img.pixels().filter(|p| p.0[0] < 128).count();
    assert!(inked > 50, "only {inked} pixels of text");
    let png = encode_png(&img).expect("encodes");
    assert!(png.starts_with(&[0x89, b'P', b'N', b'G']));
}

#[test]
fn colours_come_from_the_scheme_and_out_of_range_values_are_clamped() {
    assert_eq!(scheme(colorous::BLUES, -3.0), scheme(colorous::BLUES, 0.0));
    assert_eq!(
        scheme(colorous::BLUES, f64::NAN),
        scheme(colorous::BLUES, 0.0)
    );
    let (light, dark) = (scheme(colorous::BLUES, 0.0), scheme(colorous::BLUES, 1.0));
    assert!(light.0 > dark.0 && light.2 > dark.2);
}
