//! The test set through the device, one input at a time, each output compared with the
//! host core's on the same bytes.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use cbam_compiler::data::{self, Dataset};
use cbam_core::le::{as_i8, as_u8};
use cbam_core::Model;
use cbam_link::{Request, MAX_CHUNK};

use super::link::{Answer, Exchange, Link};
use crate::cmd_eval::Predictions;
use crate::progress;

/// Per-image results of the stream.
pub struct Streamed {
    pub predictions: Predictions,
    /// The device's counter across each inference.
    pub model_counts: Vec<u64>,
    /// The device's counter spent on the link before each output.
    pub link_counts: Vec<u64>,
    /// Indices of the images whose output differs from the host core's.
    pub mismatches: Vec<usize>,
    pub seconds: f64,
}

/// Sends every sample's int8 input, takes the device's output and compares it with the
/// host core's on the same bytes.
pub fn stream(
    link: &mut Link<'_>,
    model: &Model<'_>,
    dataset: &Dataset,
    board: &str,
) -> Result<Streamed> {
    let input = model.input();
    let raw = model.input_is_raw_pixels();
    let mut arena = vec![0u8; model.arena_size()];
    let mut host = vec![0i8; model.output().len()];
    let mut out = Streamed {
        predictions: Predictions::default(),
        model_counts: Vec::with_capacity(dataset.len()),
        link_counts: Vec::with_capacity(dataset.len()),
        mismatches: Vec::new(),
        seconds: 0.0,
    };
    let bar = progress::bar(dataset.len(), board);
    link.log.show_above(&bar);
    let start = Instant::now();
    for (i, sample) in dataset.samples.iter().enumerate() {
        let q = data::core_input_for(sample, &input, raw)
            .with_context(|| format!("sample {i} does not fit the blob's input"))?;
        let (model_count, link_count, device) =
            infer(link, as_u8(&q)).with_context(|| format!("image {i} on {board}"))?;
        model
            .run(&mut arena, &q, &mut host)
            .map_err(|e| anyhow::anyhow!("the host core failed on sample {i}: {e}"))?;
        if device != as_u8(&host) {
            out.mismatches.push(i);
        }
        out.predictions
            .push(as_i8(&device))
            .context("the model has an empty output")?;
        out.model_counts.push(model_count);
        out.link_counts.push(link_count);
        bar.inc(1);
    }
    out.seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(out)
}

/// One input through the device: its chunks, then the output and the two counts.
fn infer(link: &mut Link<'_>, input: &[u8]) -> Result<(u64, u64, Vec<u8>)> {
    let mut offset = 0;
    for chunk in input.chunks(MAX_CHUNK) {
        let end = offset + chunk.len();
        let last = end == input.len();
        let request = Request::Input {
            offset: u32::try_from(offset).context("an input of more than 4 GB")?,
            data: chunk,
        };
        let kind = if last {
            Exchange::Inference
        } else {
            Exchange::Chunk
        };
        match link.call(&request, kind)? {
            Answer::Ack { received } if !last && received as usize == end => {}
            Answer::Output {
                model_count,
                link_count,
                data,
            } if last => return Ok((model_count, link_count, data)),
            Answer::Failed(e) => bail!("the device refused the input: {e}{}", link.log.tail()),
            other => bail!("the device answered an input chunk with {other:?}"),
        }
        offset = end;
    }
    bail!("an empty input tensor: nothing to send")
}
