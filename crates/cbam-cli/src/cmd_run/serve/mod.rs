//! `cbam run --serve ADDR`: a live page, served by `cbam` itself, that shows the current
//! frame with a CBAM block's spatial attention over it, that block's channel attention, the
//! top classes, frames/s, a latency histogram and, for labelled input, the running accuracy.
//!
//! Inference never waits for a viewer: each frame replaces the one in a latest-frame slot (a
//! `watch` channel) and the HTTP side, on its own thread, reads whatever is newest when a
//! viewer is ready for more. A slow viewer misses frames; nothing queues up. The overlay PNG
//! is drawn on the HTTP side when a viewer asks for it, so frames nobody looks at cost the
//! inference loop only a copy of the model-sized preview.

mod live_stats;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use image::RgbImage;
use serde::Serialize;
use tokio::sync::watch;

use super::backend::{AttentionMap, BackendKind};
use live_stats::{LiveStats, StatsView};

/// One class as the page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ClassView {
    pub class: usize,
    pub label: String,
    pub score: f32,
}

/// What one frame gives the page.
pub struct FrameUpdate {
    pub source: String,
    pub preview: RgbImage,
    pub attention: Vec<AttentionMap>,
    pub channel_attention: Vec<Vec<f32>>,
    /// Best first.
    pub top: Vec<ClassView>,
    pub latency_ms: f64,
    /// The frame's true class (index, name), for labelled input.
    pub truth: Option<crate::frames::Truth>,
}

/// The page's view of the newest frame, sent as the JSON of each server-sent event.
#[derive(Debug, Clone, Serialize)]
struct FrameMeta {
    id: u64,
    model: String,
    backend: BackendKind,
    source: String,
    top: Vec<ClassView>,
    truth: Option<String>,
    latency_ms: f64,
    stats: StatsView,
    /// How many CBAM blocks have a spatial map (the page's block choice).
    blocks: usize,
    channel_attention: Vec<Vec<f32>>,
    /// The input has ended; this frame stays on the page.
    ended: bool,
}

/// The latest-frame slot's content.
struct Snapshot {
    meta: FrameMeta,
    preview: RgbImage,
    maps: Vec<AttentionMap>,
}

type Slot = watch::Receiver<Option<Arc<Snapshot>>>;

pub struct LivePage {
    slot: watch::Sender<Option<Arc<Snapshot>>>,
    addr: SocketAddr,
    model: String,
    backend: BackendKind,
    stats: LiveStats,
    next_id: u64,
}

impl LivePage {
    /// Binds `addr` now, so a busy or invalid address fails before any frame runs, and
    /// serves the page from a thread of its own.
    pub fn start(addr: &str, model: String, backend: BackendKind) -> Result<Self> {
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "--serve {addr}: cannot listen there; pass a free HOST:PORT this machine owns, \
                 e.g. 127.0.0.1:8080, 0.0.0.0:8080 for other machines, or port 0 for any free port"
            )
        })?;
        listener
            .set_nonblocking(true)
            .context("--serve: cannot make the listening socket non-blocking")?;
        let addr = listener
            .local_addr()
            .context("--serve: cannot read the bound address")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("--serve: cannot start the HTTP runtime")?;
        let (slot, viewers) = watch::channel(None);
        std::thread::Builder::new()
            .name("cbam-serve".into())
            .spawn(move || {
                let served = runtime.block_on(routes::serve(listener, viewers));
                if let Err(e) = served {
                    crate::errln!("warning: the live page stopped: {e}");
                }
            })
            .context("--serve: cannot start the HTTP thread")?;
        Ok(LivePage {
            slot,
            addr,
            model,
            backend,
            stats: LiveStats::default(),
            next_id: 0,
        })
    }

    /// The page's address, for the user (an unspecified host is shown as it was bound).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Puts `frame` in the slot, replacing the one before; never blocks.
    pub fn publish(&mut self, frame: FrameUpdate) {
        let correct = frame
            .truth
            .as_ref()
            .map(|(class, _)| frame.top.first().is_some_and(|t| t.class == *class));
        let stats = self.stats.record(Instant::now(), frame.latency_ms, correct);
        let meta = FrameMeta {
            id: self.next_id,
            model: self.model.clone(),
            backend: self.backend,
            source: frame.source,
            top: frame.top,
            truth: frame.truth.map(|(_, name)| name),
            latency_ms: frame.latency_ms,
            stats,
            blocks: frame.attention.len(),
            channel_attention: frame.channel_attention,
            ended: false,
        };
        self.next_id += 1;
        self.slot.send_replace(Some(Arc::new(Snapshot {
            meta,
            preview: frame.preview,
            maps: frame.attention,
        })));
    }

    /// Marks the last frame as the end of the input; the page keeps showing it.
    pub fn end(&mut self) {
        let last = self.slot.borrow().clone();
        if let Some(last) = last {
            let mut meta = last.meta.clone();
            meta.ended = true;
            self.slot.send_replace(Some(Arc::new(Snapshot {
                meta,
                preview: last.preview.clone(),
                maps: last.maps.clone(),
            })));
        }
    }
}

#[cfg(test)]
mod tests;
