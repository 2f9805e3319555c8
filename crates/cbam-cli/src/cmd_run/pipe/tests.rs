use super::*;
use crate::frames::limited_yuv_to_rgb;

fn frames(pipe: &mut PipeFrames<&[u8]>) -> Result<Vec<Frame>, FrameError> {
    let mut out = Vec::new();
    loop {
        match pipe.next_frame()? {
            Next::Frame(f) => out.push(f),
            Next::End => return Ok(out),
            other => panic!("a pipe only gives frames or ends: {other:?}"),
        }
    }
}

#[test]
fn raw_formats_parse_and_bad_ones_say_how() {
    assert_eq!(
        "yuv420:640x480".parse::<RawFormat>(),
        Ok(RawFormat::Yuv420 {
            width: 640,
            height: 480
        })
    );
    for bad in [
        "yuv420",
        "rgb24:4x4",
        "yuv420:0x4",
        "yuv420:4x",
        "yuv420:99999x4",
    ] {
        let err = bad.parse::<RawFormat>().unwrap_err();
        assert!(err.contains("yuv420:WxH"), "{bad}: {err}");
    }
}

#[test]
fn raw_i420_frames_are_read_until_the_stream_ends() {
    // 4x2: 8 luma bytes, 2 + 2 chroma bytes per frame.
    let mut stream = Vec::new();
    for luma in [16u8, 235] {
        stream.extend([luma; 8]);
        stream.extend([128u8; 4]);
    }
    let raw = Some(RawFormat::Yuv420 {
        width: 4,
        height: 2,
    });
    let mut pipe = PipeFrames::new(stream.as_slice(), raw, u64::MAX).unwrap();
    let got = frames(&mut pipe).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].source, "stdin#1");
    let rgb = got[0].image.to_rgb8();
    assert_eq!((rgb.width(), rgb.height()), (4, 2));
    assert_eq!(rgb.get_pixel(0, 0).0, [0, 0, 0], "limited-range black");
    assert_eq!(got[1].image.to_rgb8().get_pixel(3, 1).0, [255, 255, 255]);
}

#[test]
fn a_raw_frame_cut_off_is_an_error_that_names_the_size() {
    let stream = [16u8; 12 + 5];
    let raw = Some(RawFormat::Yuv420 {
        width: 4,
        height: 2,
    });
    let mut pipe = PipeFrames::new(&stream[..], raw, u64::MAX).unwrap();
    assert!(matches!(pipe.next_frame(), Ok(Next::Frame(_))));
    let err = pipe.next_frame().unwrap_err().to_string();
    assert!(
        err.contains("raw frame 1 ends after 5 of its 12 bytes"),
        "{err}"
    );
    assert!(err.contains("yuv420:4x2"), "{err}");
}

#[test]
fn a_frame_over_the_data_cap_is_refused_before_reading() {
    let raw = Some(RawFormat::Yuv420 {
        width: 640,
        height: 480,
    });
    let err = PipeFrames::new(&b""[..], raw, 1000)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("460800 bytes") && err.contains("--max-data-bytes"),
        "{err}"
    );
    let header = b"YUV4MPEG2 W640 H480 C420jpeg\n";
    let err = PipeFrames::new(&header[..], None, 1000)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("460800 bytes"), "{err}");
}

#[test]
fn y4m_on_a_pipe_reads_its_colour_range_and_a_cut_off_is_an_error() {
    let frame = [16u8, 16, 16, 16, 128, 128];
    let mut stream = b"YUV4MPEG2 W2 H2 F25:1 Ip A1:1 C420jpeg XYSCSS=420JPEG\n".to_vec();
    for _ in 0..2 {
        stream.extend(b"FRAME\n");
        stream.extend(frame);
    }
    let mut pipe = PipeFrames::new(stream.as_slice(), None, u64::MAX).unwrap();
    let got = frames(&mut pipe).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].image.to_rgb8().get_pixel(0, 0).0, [0, 0, 0]);

    let mut full = b"YUV4MPEG2 W2 H2 C420jpeg XCOLORRANGE=FULL\nFRAME\n".to_vec();
    full.extend(frame);
    let mut pipe = PipeFrames::new(full.as_slice(), None, u64::MAX).unwrap();
    let got = frames(&mut pipe).unwrap();
    assert_eq!(got[0].image.to_rgb8().get_pixel(0, 0).0, [16, 16, 16]);

    stream.extend(b"FRAME\n\x10\x10");
    let mut pipe = PipeFrames::new(stream.as_slice(), None, u64::MAX).unwrap();
    let err = frames(&mut pipe).err().unwrap().to_string();
    assert!(err.contains("cut off in frame 2"), "{err}");
}

#[test]
fn y4m_headers_it_cannot_read_say_what_to_write_instead() {
    for (header, expect) in [
        ("YUV4MPEG2 W2 H2 C420p10\n", "C420p10 is not supported"),
        ("YUV4MPEG2 W2 H2 It\n", "interlaced"),
        ("YUV4MPEG2 W2\n", "0 is missing or out of range"),
        ("P6 2 2 255\n", "does not start with YUV4MPEG2"),
    ] {
        let err = PipeFrames::new(header.as_bytes(), None, u64::MAX)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(expect), "{header}: {err}");
    }
}

#[test]
fn limited_range_maps_its_ends_to_black_white_and_the_primaries() {
    assert_eq!(limited_yuv_to_rgb(16, 128, 128), [0, 0, 0]);
    assert_eq!(limited_yuv_to_rgb(235, 128, 128), [255, 255, 255]);
    assert_eq!(limited_yuv_to_rgb(126, 128, 128), [128, 128, 128]);
    // BT.601 limited red (255, 0, 0) is Y 81, Cb 90, Cr 240.
    let [r, g, b] = limited_yuv_to_rgb(81, 90, 240);
    assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
}
