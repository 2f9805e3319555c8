//! `cbam run`: classify frames from a camera, an image, a directory of images or a Y4M video
//! with tract (ONNX) or the int8 core (`.cbam`); per-frame top-k and latency, then
//! throughput and latency percentiles; optional attention overlays.

pub mod backend;
mod pipe;
mod serve;
mod stats;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cbam_compiler::prune::plot::encode_png;
use clap::Args;
use serde::Serialize;

use crate::camera::Camera;
use crate::frames::{self, FileFrames, Frame, Next};
use crate::limits::LimitArgs;
use crate::norm::NormArgs;
use crate::parallel::{self, OrderedStream};
use crate::{interrupt, outputs, overlay};
use backend::{BackendKind, Inference, ModelFile, Runner};
use pipe::{PipeFrames, RawFormat};
use serve::{ClassView, FrameUpdate, LivePage};
use stats::Summary;

#[derive(Debug, Clone, Args)]
#[command(
    about = "Classify camera frames, images or a video with tract or the int8 core; FPS, latency, attention overlays",
    after_help = "\
Examples:
  # the int8 core on a USB webcam, 100 frames, with attention overlays
  cbam run model.cbam --camera /dev/video0 --frames 100 --overlay overlays/
  # tract on a directory of images, JSON for scripts
  cbam run models/fmnist_cbam.onnx --input models/data/images/ --json
  # the QDQ int8 model through tract on a video (Y4M: ffmpeg -i in.mp4 -pix_fmt yuv420p in.y4m)
  cbam run model.int8.onnx --input clip.y4m --top-k 5
  # the Pi camera module through a pipe, watched live at http://<pi>:8080/
  rpicam-vid -t 0 -n --codec yuv420 --width 640 --height 480 -o - \\
    | cbam run model.cbam --input - --raw yuv420:640x480 --serve 0.0.0.0:8080
  # any video ffmpeg reads, as a Y4M stream
  ffmpeg -i clip.mp4 -pix_fmt yuv420p -f yuv4mpegpipe - | cbam run model.cbam --input -
  # lowest latency per frame on a 4-core Pi: each layer split over the four cores
  cbam run model.cbam --camera /dev/video0 --threads 4 --split-layers

MODEL: a float or QDQ .onnx (tract) or a .cbam blob (int8 core); --backend, when given,
must match it. Frames are centre-cropped to the model's aspect ratio (or as --resize says,
or as the blob records), resized and converted to grayscale or RGB as the model takes; they
are normalised as --mean/--std say, or as the model records (an ONNX model's cbam.mean /
cbam.std metadata, a blob's own); raw-pixel blobs take pixel - 128. In a directory an unreadable image is
skipped with a warning; a single unreadable image is an error. Latency is per frame from
the decoded frame to the scores (crop, resize, normalise, inference). Ctrl-C stops a camera,
pipe or --serve run and still prints the summary. Raw frames (--raw) are BT.601 limited
range, as ffmpeg and rpicam-vid write them; a Y4M stream is too unless its header says
XCOLORRANGE=FULL. An ImageFolder (DIR/<class>/*.png) gives the live page its accuracy."
)]
pub struct RunArgs {
    /// The model: float or QDQ .onnx (tract) or .cbam blob (int8 core)
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// V4L2 camera device, e.g. /dev/video0
    #[arg(
        long,
        value_name = "DEV",
        conflicts_with = "input",
        required_unless_present = "input"
    )]
    pub camera: Option<PathBuf>,
    /// An image (PNG/JPEG), a directory of images, a .y4m video, or - for a Y4M stream (or,
    /// with --raw, raw frames) on standard input
    #[arg(long, value_name = "PATH")]
    pub input: Option<PathBuf>,
    /// With --input -: headerless frames of this layout, e.g. yuv420:640x480 (what
    /// `rpicam-vid --codec yuv420 -o -` writes at --width 640 --height 480)
    #[arg(long, value_name = "FORMAT", requires = "input")]
    pub raw: Option<RawFormat>,
    /// The engine; defaults to what MODEL is (tract for .onnx, core for .cbam)
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Write one PNG per frame with the last CBAM block's attention over the input
    #[arg(long, value_name = "DIR")]
    pub overlay: Option<PathBuf>,
    /// Stop after N frames (default: all frames of the input; a camera runs until Ctrl-C)
    #[arg(long, value_name = "N")]
    pub frames: Option<usize>,
    /// Serve a live page at HOST:PORT (e.g. 0.0.0.0:8080): the frame with a CBAM block's
    /// attention, channel weights, top classes, frames/s, latency, accuracy; it stays up
    /// after the input ends, until Ctrl-C
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
    /// Print one JSON document at the end instead of a line per frame
    #[arg(long)]
    pub json: bool,
    /// How many classes to show per frame
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub top_k: usize,
    /// Worker threads, each running whole frames with buffers of its own (0: every core).
    /// Frames are still reported in input order; more threads raise frames/s, not the
    /// latency of one frame (see --split-layers)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parallel::threads_arg)]
    pub threads: usize,
    /// Run one frame at a time with each layer's rows split over the --threads threads:
    /// lower latency per frame, fewer frames/s than frames in parallel. Int8 core only;
    /// the results are the same bits. More than 16 threads split no further
    #[arg(long)]
    pub split_layers: bool,
    #[command(flatten)]
    pub norm: NormArgs,
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: LimitArgs,
}

#[derive(Debug, Serialize)]
struct Class {
    class: usize,
    label: String,
    score: f32,
}

#[derive(Debug, Serialize)]
struct FrameReport {
    index: usize,
    source: String,
    top_k: Vec<Class>,
    latency_ms: f64,
    /// The core's int8 output, for bit-exact comparisons between machines.
    #[serde(skip_serializing_if = "Option::is_none")]
    output_q: Option<Vec<i8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overlay: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    backend: BackendKind,
    input: String,
    frames: Vec<FrameReport>,
    summary: Summary,
    notes: Vec<String>,
    warnings: Vec<String>,
}

enum Source {
    Files(FileFrames),
    Camera(Box<Camera>),
    Pipe(PipeFrames<std::io::StdinLock<'static>>),
}

impl Source {
    fn open(args: &RunArgs) -> Result<(Self, String)> {
        match (&args.camera, &args.input) {
            (Some(dev), _) => {
                let camera = Camera::open(dev)?;
                let name = camera.describe();
                Ok((Source::Camera(Box::new(camera)), name))
            }
            (None, Some(path)) if path == Path::new("-") => {
                let pipe = PipeFrames::stdin(args.raw, args.limits.max_data_bytes)?;
                Ok((Source::Pipe(pipe), "stdin".into()))
            }
            (None, Some(path)) => {
                if args.raw.is_some() {
                    bail!(
                        "--raw describes frames on standard input; pass --input - and pipe them \
                         in (a raw file: cat it into `cbam run ... --input - --raw ...`)"
                    );
                }
                let files = FileFrames::open(path, args.limits.max_data_bytes)
                    .with_context(|| format!("cannot open input {}", path.display()))?;
                Ok((Source::Files(files), path.display().to_string()))
            }
            (None, None) => bail!("pass --camera DEV or --input PATH"),
        }
    }

    fn next(&mut self) -> Result<Next> {
        match self {
            Source::Files(f) => Ok(f.next_frame()?),
            Source::Camera(c) => Ok(c.next_frame()),
            Source::Pipe(p) => Ok(p.next_frame()?),
        }
    }
}

pub fn run(args: &RunArgs) -> Result<()> {
    if args.frames == Some(0) {
        bail!("--frames 0 would run nothing; pass --frames N with N >= 1, or leave it out to run every frame");
    }
    if args.top_k == 0 {
        bail!("--top-k 0 would show no class; pass --top-k K with K >= 1");
    }
    let file = ModelFile::open(&args.model, args.backend)?;
    let mut notes = Vec::new();
    let limits = args.limits.limits();
    let with_attention = args.overlay.is_some() || args.serve.is_some();
    let mut runner = Runner::new(&file, with_attention, &mut notes, &limits, &args.norm)?;
    let threads = parallel::ThreadPlan::new(args.threads, args.split_layers);
    if threads.layers > 1 && !runner.split_layers(threads.layers)? {
        notes.push(format!(
            "{}: tract runs each frame on one thread; --split-layers runs frames one at a time",
            file.path.display()
        ));
    }
    // Before the input opens: a camera or pipe may take a while, a bad address does not.
    let mut live = match &args.serve {
        Some(addr) => {
            let page = LivePage::start(addr, file.path.display().to_string(), file.backend)?;
            errln!("live page: {}", page.url());
            Some(page)
        }
        None => None,
    };
    let (mut source, input_name) = Source::open(args)?;
    let mut overlays = match &args.overlay {
        Some(dir) => Some(Overlays::new(dir, args, &source)?),
        None => None,
    };
    let stop = stop_flag(matches!(source, Source::Camera(_) | Source::Pipe(_)) || live.is_some());
    let mut run = RunState::default();
    let started = Instant::now();
    let workers = (0..threads.frames).map(|_| runner.worker()).collect();
    // Frames are read here and inferred by the workers; reports come back in input order.
    let read_error = std::thread::scope(|scope| -> Result<Option<anyhow::Error>> {
        let mut stream = OrderedStream::start(
            scope,
            workers,
            |worker: &mut Runner<'_>, (index, frame): (usize, Frame)| {
                infer_frame(worker, frame, index, with_attention)
            },
        );
        let mut emit = |inferred: Result<Inferred>| -> Result<()> {
            let report = report_frame(
                args,
                &runner,
                inferred?,
                &mut overlays,
                live.as_mut(),
                &mut notes,
            )?;
            if !args.json {
                outln!("{}", render_frame(&report))?;
            }
            run.frames.push(report);
            Ok(())
        };
        let mut submitted = 0;
        while args.frames.is_none_or(|n| submitted < n) && !stop.load(Ordering::Relaxed) {
            let frame = match source.next() {
                Ok(Next::Frame(frame)) => frame,
                Ok(Next::Skipped(why)) => {
                    warn(&mut run.warnings, format!("skipped: {why}"));
                    continue;
                }
                Ok(Next::EndedEarly(why)) => {
                    warn(&mut run.warnings, why);
                    break;
                }
                Ok(Next::End) => break,
                Err(e) => {
                    stream.finish(&mut emit)?;
                    return Ok(Some(e));
                }
            };
            stream.submit((submitted, frame), &mut emit)?;
            submitted += 1;
        }
        stream.finish(&mut emit)?;
        Ok(None)
    })?;
    if let Some(e) = read_error {
        // Reading the input failed midway: report what ran, then fail.
        if !run.frames.is_empty() {
            finish(args, &file, &input_name, run, started, notes)?;
        }
        return Err(e);
    }
    if run.frames.is_empty() {
        bail!("{input_name}: no frame could be read, so nothing ran (see the warnings above)");
    }
    finish(args, &file, &input_name, run, started, notes)?;
    if let Some(live) = &mut live {
        linger(live, stop);
    }
    Ok(())
}
/// The input has ended: the page keeps its last frame until Ctrl-C, so a short input can
/// still be looked at.
fn linger(live: &mut LivePage, stop: &AtomicBool) {
    live.end();
    errln!(
        "the input has ended; {} still shows the last frame; Ctrl-C to stop",
        live.url()
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[derive(Default)]
struct RunState {
    frames: Vec<FrameReport>,
    warnings: Vec<String>,
}

/// Printed now and, with --json, kept in the document too.
fn warn(warnings: &mut Vec<String>, message: String) {
    errln!("warning: {message}");
    warnings.push(message);
}

/// Ctrl-C ends a camera, pipe or served run cleanly (the summary is printed); files end on
/// their own, so they keep the default.
fn stop_flag(camera: bool) -> &'static AtomicBool {
    static NEVER: AtomicBool = AtomicBool::new(false);
    if camera {
        interrupt::stop_flag()
    } else {
        &NEVER
    }
}

/// Where overlays go: one PNG per frame in `dir`, never over one of the input images.
struct Overlays {
    dir: PathBuf,
    inputs: HashSet<PathBuf>,
}

impl Overlays {
    /// Creates `dir` when it is missing, after checking that it is no input.
    fn new(dir: &Path, args: &RunArgs, source: &Source) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            bail!(
                "--overlay {} is a file; give a directory for the overlay PNGs",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the overlay directory {}", dir.display()))?;
        let mut inputs: HashSet<PathBuf> = match source {
            Source::Files(files) => files.paths().iter().filter_map(|p| canonical(p)).collect(),
            Source::Camera(_) | Source::Pipe(_) => HashSet::new(),
        };
        inputs.extend(canonical(&args.model));
        Ok(Overlays {
            dir: dir.to_path_buf(),
            inputs,
        })
    }

    fn path(&self, index: usize) -> Result<PathBuf> {
        let path = self.dir.join(format!("frame_{index:05}.png"));
        if canonical(&path).is_some_and(|c| self.inputs.contains(&c)) {
            bail!(
                "the overlay {} would replace an input of this run; choose another --overlay \
                 directory",
                path.display()
            );
        }
        Ok(path)
    }
}

fn canonical(path: &Path) -> Option<PathBuf> {
    path.canonicalize().ok()
}

/// What a worker made of one frame, before it is reported.
struct Inferred {
    index: usize,
    source: String,
    truth: Option<crate::frames::Truth>,
    fitted_note: Option<String>,
    preview: image::RgbImage,
    inference: Inference,
    latency_ms: f64,
}

/// Fits and infers one frame (on a worker thread).
fn infer_frame(
    runner: &mut Runner<'_>,
    frame: Frame,
    index: usize,
    with_attention: bool,
) -> Result<Inferred> {
    let start = Instant::now();
    let fitted = frames::fit(&frame.image, runner.input_spec()).map_err(anyhow::Error::msg)?;
    let inference = runner
        .infer(&fitted.pixels_chw, with_attention)
        .with_context(|| format!("frame {index} ({})", frame.source))?;
    let latency_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(Inferred {
        index,
        source: frame.source,
        truth: frame.truth,
        fitted_note: fitted.note,
        preview: fitted.preview,
        inference,
        latency_ms,
    })
}

/// The report of an inferred frame, its notes and overlay (in input order).
fn report_frame(
    args: &RunArgs,
    runner: &Runner<'_>,
    inferred: Inferred,
    overlays: &mut Option<Overlays>,
    live: Option<&mut LivePage>,
    notes: &mut Vec<String>,
) -> Result<FrameReport> {
    let Inferred {
        index,
        source,
        truth,
        fitted_note,
        preview,
        inference,
        latency_ms,
    } = inferred;
    if let Some(note) = fitted_note {
        note_once(notes, note);
    }
    let shown = top_k(&inference, args.top_k, runner);
    let overlay = match overlays {
        Some(o) => Some(write_overlay(
            &o.path(index)?,
            &preview,
            &inference,
            &shown,
            notes,
        )?),
        None => None,
    };
    if let Some(live) = live {
        let top = top_k(&inference, LIVE_TOP_K, runner)
            .into_iter()
            .map(|c| ClassView {
                class: c.class,
                label: c.label,
                score: c.score,
            })
            .collect();
        live.publish(FrameUpdate {
            source: source.clone(),
            preview,
            attention: inference.attention,
            channel_attention: inference.channel_attention,
            top,
            latency_ms,
            truth,
        });
    }
    Ok(FrameReport {
        index,
        source,
        top_k: shown,
        latency_ms,
        output_q: inference.output_q,
        overlay,
    })
}

/// The live page lists this many classes, whatever --top-k says for the terminal.
const LIVE_TOP_K: usize = 3;

/// Notes repeat for every frame of the same size; the user needs each once.
fn note_once(notes: &mut Vec<String>, note: String) {
    if !notes.contains(&note) {
        errln!("note: {note}");
        notes.push(note);
    }
}

fn top_k(inference: &Inference, k: usize, runner: &Runner<'_>) -> Vec<Class> {
    let mut order: Vec<usize> = (0..inference.scores.len()).collect();
    // Highest first; the lower index first on ties, as argmax does; NaN last.
    order.sort_by(|&a, &b| {
        let score = |i: usize| inference.scores.get(i).copied().unwrap_or(f32::NAN);
        let (x, y) = (score(a), score(b));
        y.partial_cmp(&x)
            .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
            .then(a.cmp(&b))
    });
    order
        .into_iter()
        .take(k)
        .map(|class| Class {
            class,
            label: runner.label(class),
            score: inference.scores.get(class).copied().unwrap_or(f32::NAN),
        })
        .collect()
}

fn write_overlay(
    path: &Path,
    preview: &image::RgbImage,
    inference: &Inference,
    top: &[Class],
    notes: &mut Vec<String>,
) -> Result<String> {
    let caption = top
        .first()
        .map(|c| format!("{} {:.2}", c.label, c.score))
        .unwrap_or_default();
    let last = inference.attention.last();
    if last.is_none() {
        note_once(
            notes,
            "no attention map for this model: overlays show the input and class only".into(),
        );
    }
    let image = overlay::panel(preview, last, &caption);
    outputs::write_one(path, &encode_png(&image)?)
        .with_context(|| format!("cannot write the overlay {}", path.display()))?;
    Ok(path.display().to_string())
}

fn render_frame(r: &FrameReport) -> String {
    let classes: Vec<String> = r
        .top_k
        .iter()
        .map(|c| format!("{} {:.3}", c.label, c.score))
        .collect();
    format!(
        "frame {:>4}  {:>8.2} ms  {}  [{}]",
        r.index,
        r.latency_ms,
        classes.join(" | "),
        r.source
    )
}

fn finish(
    args: &RunArgs,
    file: &ModelFile,
    input: &str,
    run: RunState,
    started: Instant,
    notes: Vec<String>,
) -> Result<()> {
    let latencies: Vec<f64> = run.frames.iter().map(|f| f.latency_ms).collect();
    let summary = Summary::new(&latencies, started.elapsed().as_secs_f64());
    if args.json {
        let report = Report {
            model: file.path.display().to_string(),
            backend: file.backend,
            input: input.to_string(),
            frames: run.frames,
            summary,
            notes,
            warnings: run.warnings,
        };
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        outln!("{}", summary.render())?;
    }
    Ok(())
}
