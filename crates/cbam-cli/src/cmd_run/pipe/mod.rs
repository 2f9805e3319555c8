//! `--input -`: frames from standard input, as a Y4M stream (`ffmpeg ... -f yuv4mpegpipe -`)
//! or, with `--raw yuv420:WxH`, as bare I420 frames (`rpicam-vid --codec yuv420 -o -`): each
//! frame a full-size Y plane, then quarter-size Cb and Cr planes, nothing between frames.
//! Raw frames carry no colour information, so they are read as BT.601 limited range, what
//! ffmpeg and rpicam-vid write by default. The stream ending at a frame boundary ends the run;
//! ending inside a frame is an error (the writer died).

use std::io::{BufRead, Read};
use std::path::Path;
use std::str::FromStr;

use crate::frames::{
    yuv_planes_to_image, Chroma, Frame, FrameError, Next, Range, Y4mReader, MAX_Y4M_SIDE,
};

/// The name frames from standard input carry (`stdin#12`).
const STDIN: &str = "stdin";

/// `--raw FORMAT`: the layout of headerless frames on standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    /// Planar 4:2:0, 8 bits: Y (W x H), Cb, Cr (each ceil(W/2) x ceil(H/2)).
    Yuv420 { width: usize, height: usize },
}

impl FromStr for RawFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "give it as yuv420:WxH, e.g. yuv420:640x480 (the --width and --height \
                     rpicam-vid was given)";
        let (kind, size) = s
            .split_once(':')
            .ok_or_else(|| format!("'{s}' has no size; {usage}"))?;
        if !kind.eq_ignore_ascii_case("yuv420") && !kind.eq_ignore_ascii_case("i420") {
            return Err(format!(
                "'{kind}' is not a raw format cbam reads (only yuv420); {usage}"
            ));
        }
        let side = |v: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|v| (1..=MAX_Y4M_SIDE).contains(v))
        };
        match size.split_once(['x', 'X']).map(|(w, h)| (side(w), side(h))) {
            Some((Some(width), Some(height))) => Ok(RawFormat::Yuv420 { width, height }),
            _ => Err(format!(
                "'{size}' is not a size of 1..{MAX_Y4M_SIDE} x 1..{MAX_Y4M_SIDE}; {usage}"
            )),
        }
    }
}

/// Frames from a pipe.
pub enum PipeFrames<R> {
    Y4m(Y4mReader<R>),
    Raw {
        reader: R,
        width: usize,
        height: usize,
        index: usize,
    },
}

impl PipeFrames<std::io::StdinLock<'static>> {
    /// Standard input; refuses a terminal, which would wait forever for a frame.
    pub fn stdin(raw: Option<RawFormat>, max_frame_bytes: u64) -> Result<Self, FrameError> {
        use std::io::IsTerminal;
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Err(FrameError::BadStream {
                path: STDIN.into(),
                why: "--input - reads frames from standard input, which is a terminal here; \
                      pipe a Y4M stream (ffmpeg ... -f yuv4mpegpipe -) or raw frames \
                      (rpicam-vid --codec yuv420 -o - with --raw yuv420:WxH) into it"
                    .into(),
            });
        }
        PipeFrames::new(stdin.lock(), raw, max_frame_bytes)
    }
}

impl<R: BufRead> PipeFrames<R> {
    /// Reads the Y4M header now when there is one, so a bad stream fails before the model
    /// runs.
    pub fn new(
        reader: R,
        raw: Option<RawFormat>,
        max_frame_bytes: u64,
    ) -> Result<Self, FrameError> {
        let Some(RawFormat::Yuv420 { width, height }) = raw else {
            return Ok(PipeFrames::Y4m(Y4mReader::from_reader(
                Path::new(STDIN),
                reader,
                max_frame_bytes,
                true,
            )?));
        };
        let len = RAW_CHROMA.frame_len(width, height);
        if len as u64 > max_frame_bytes {
            return Err(FrameError::BadStream {
                path: STDIN.into(),
                why: format!(
                    "one {width}x{height} frame is {len} bytes, over --max-data-bytes \
                     {max_frame_bytes}; capture smaller frames or raise --max-data-bytes"
                ),
            });
        }
        Ok(PipeFrames::Raw {
            reader,
            width,
            height,
            index: 0,
        })
    }

    pub fn next_frame(&mut self) -> Result<Next, FrameError> {
        match self {
            PipeFrames::Y4m(y4m) => y4m.next_frame(),
            PipeFrames::Raw {
                reader,
                width,
                height,
                index,
            } => next_raw(reader, *width, *height, index),
        }
    }
}

fn next_raw(
    reader: &mut impl Read,
    width: usize,
    height: usize,
    index: &mut usize,
) -> Result<Next, FrameError> {
    let mut data = vec![0u8; RAW_CHROMA.frame_len(width, height)];
    let got = fill(reader, &mut data).map_err(|source| FrameError::Io {
        path: STDIN.into(),
        source,
    })?;
    if got == 0 {
        return Ok(Next::End);
    }
    if got < data.len() {
        return Err(FrameError::BadStream {
            path: STDIN.into(),
            why: format!(
                "raw frame {index} ends after {got} of its {} bytes; is --raw \
                 yuv420:{width}x{height} the size the writer uses?",
                data.len()
            ),
        });
    }
    let image = yuv_planes_to_image(&data, width, height, RAW_CHROMA, Range::Limited);
    let source = format!("{STDIN}#{index}");
    *index += 1;
    Ok(Next::Frame(Frame {
        source,
        image,
        truth: None,
    }))
}

const RAW_CHROMA: Chroma = Chroma::Yuv { sx: 2, sy: 2 };

/// Reads until `buf` is full or the stream ends; how many bytes it got.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests;
