//! `cbam run --input -` through a real pipe: generated Y4M and raw I420 streams give the same
//! classes (and, on the int8 core, the same int8 outputs) as the same frames given as PNGs;
//! a stream cut off mid-frame fails; end of stream ends the run.
//!
//! The test's YCbCr conversions are its own floating-point BT.601 limited-range formulas,
//! independent of the integer ones in `cbam`; the PNGs are what those formulas decode the
//! stream to, so both runs see the same pixels.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn cbam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args(args)
        .output()
        .expect("the cbam binary runs")
}

/// `cbam run` with `stream` written into its standard input through an OS pipe.
fn cbam_piped(args: &[&str], stream: Vec<u8>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the cbam binary starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A writer thread, so a full pipe cannot deadlock against cbam's full stdout.
    let writer = std::thread::spawn(move || {
        // cbam may stop reading early on an error; a broken pipe is then expected.
        let _ = stdin.write_all(&stream);
    });
    let out = child.wait_with_output().expect("cbam finishes");
    writer.join().expect("the writer thread");
    out
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "cbam failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

/// Per frame: (top-1 class, its score, the core's int8 output if any).
fn results(report: &serde_json::Value) -> Vec<(u64, f64, Option<serde_json::Value>)> {
    report["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            let top = &f["top_k"][0];
            (
                top["class"].as_u64().unwrap(),
                top["score"].as_f64().unwrap(),
                f.get("output_q").cloned(),
            )
        })
        .collect()
}

fn to_byte(x: f64) -> u8 {
    x.round().clamp(0.0, 255.0) as u8
}

/// BT.601 limited range, one pixel.
fn rgb_to_ycbcr([r, g, b]: [f64; 3]) -> [f64; 3] {
    [
        16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0,
        128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0,
        128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0,
    ]
}

fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (
        (f64::from(y) - 16.0) * 255.0 / 219.0,
        (f64::from(cb) - 128.0) * 255.0 / 224.0,
        (f64::from(cr) - 128.0) * 255.0 / 224.0,
    );
    [
        to_byte(y + 1.402 * cr),
        to_byte(y - 0.344136 * cb - 0.714136 * cr),
        to_byte(y + 1.772 * cb),
    ]
}

/// One I420 frame of `img` (even sides): Y, then Cb and Cr averaged over 2x2 blocks.
fn i420(img: &image::RgbImage) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let ycc = |x: usize, y: usize| {
        let p = img.get_pixel(x as u32, y as u32).0;
        rgb_to_ycbcr(p.map(f64::from))
    };
    let mut out: Vec<u8> = (0..h * w).map(|i| to_byte(ycc(i % w, i / w)[0])).collect();
    for plane in 1..3 {
        for cy in 0..h / 2 {
            for cx in 0..w / 2 {
                let sum: f64 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                    .iter()
                    .map(|(dx, dy)| ycc(2 * cx + dx, 2 * cy + dy)[plane])
                    .sum();
                out.push(to_byte(sum / 4.0));
            }
        }
    }
    out
}

/// What an I420 frame looks like decoded, chroma repeated over its 2x2 block.
fn decoded(frame: &[u8], w: usize, h: usize) -> image::RgbImage {
    let (cb, cr) = frame[w * h..].split_at(w * h / 4);
    image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let c = (y / 2) * (w / 2) + x / 2;
        image::Rgb(ycbcr_to_rgb(frame[y * w + x], cb[c], cr[c]))
    })
}

/// The first `n` RGB test images (64x64, sorted by class folder then name).
fn rgb_test_images(n: usize) -> Vec<image::RgbImage> {
    let dir = root().join("models/data/rgb/test256_64");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|class| std::fs::read_dir(class.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    paths.sort();
    // Spread over the classes rather than the first class's images only.
    let step = paths.len() / n;
    (0..n)
        .map(|i| image::open(&paths[i * step]).unwrap().to_rgb8())
        .collect()
}

/// Writes `frames` as PNGs `frame_00.png`... into `dir`, in stream order.
fn write_pngs(dir: &Path, frames: &[image::RgbImage]) {
    for (i, f) in frames.iter().enumerate() {
        f.save(dir.join(format!("frame_{i:02}.png"))).unwrap();
    }
}

#[test]
fn raw_i420_on_a_pipe_classifies_as_the_same_frames_as_pngs() {
    let images = rgb_test_images(6);
    let frames: Vec<Vec<u8>> = images.iter().map(i420).collect();
    let pngs: Vec<image::RgbImage> = frames.iter().map(|f| decoded(f, 64, 64)).collect();
    let dir = tempfile::tempdir().unwrap();
    write_pngs(dir.path(), &pngs);
    let model = root().join("models/rgb_resnet_cbam64.onnx");
    let norm = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"];
    let mut args = vec!["run", s(&model), "--json"];
    args.extend(norm);
    let from_pngs = results(&json(&cbam(
        &[args.as_slice(), &["--input", s(dir.path())]].concat(),
    )));
    let from_pipe = results(&json(&cbam_piped(
        &[args.as_slice(), &["--input", "-", "--raw", "yuv420:64x64"]].concat(),
        frames.concat(),
    )));
    assert_eq!(from_pipe.len(), 6, "every frame of the stream ran");
    for (i, (pipe, png)) in from_pipe.iter().zip(&from_pngs).enumerate() {
        assert_eq!(pipe.0, png.0, "frame {i}: class");
        assert!(
            (pipe.1 - png.1).abs() < 1e-3,
            "frame {i}: {pipe:?} vs {png:?}"
        );
    }
}

#[test]
fn y4m_on_a_pipe_gives_the_core_the_same_int8_outputs_as_pngs() {
    // Fashion-MNIST images as 4:2:0 colour Y4M (grey, so chroma is flat 128).
    let dir = tempfile::tempdir().unwrap();
    let mut stream = b"YUV4MPEG2 W28 H28 F30:1 Ip A1:1 C420jpeg XYSCSS=420JPEG\n".to_vec();
    let mut pngs = Vec::new();
    for i in 0..8 {
        let path = root().join(format!("models/data/images/test_{i:03}.png"));
        let rgb = image::open(path).unwrap().to_rgb8();
        let frame = i420(&rgb);
        stream.extend_from_slice(b"FRAME\n");
        stream.extend_from_slice(&frame);
        pngs.push(decoded(&frame, 28, 28));
    }
    write_pngs(dir.path(), &pngs);
    let blob = root().join("models/fmnist_cbam.cbam");
    let from_pngs = results(&json(&cbam(&[
        "run",
        s(&blob),
        "--json",
        "--input",
        s(dir.path()),
    ])));
    let from_pipe = results(&json(&cbam_piped(
        &["run", s(&blob), "--json", "--input", "-"],
        stream,
    )));
    assert_eq!(from_pipe.len(), 8);
    assert_eq!(from_pipe, from_pngs);
}

#[test]
fn a_stream_cut_off_mid_frame_fails_and_says_where() {
    let blob = root().join("models/fmnist_cbam.cbam");
    let mut frames = vec![16u8; 28 * 28 * 3 / 2 * 2];
    frames.truncate(28 * 28 * 3 / 2 + 100);
    let out = cbam_piped(
        &["run", s(&blob), "--input", "-", "--raw", "yuv420:28x28"],
        frames,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("raw frame 1 ends after 100 of its 1176 bytes"),
        "{stderr}"
    );
    // The frame before the cut still ran and was reported.
    assert!(String::from_utf8_lossy(&out.stdout).contains("frame    0"));

    let out = cbam_piped(&["run", s(&blob), "--input", "-"], b"P6\n".to_vec());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("YUV4MPEG2"),
        "{stderr}"
    );

    let png = root().join("models/data/images/test_000.png");
    let out = cbam(&["run", s(&blob), "--input", s(&png), "--raw", "yuv420:28x28"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--input -"),
        "{stderr}"
    );
}
