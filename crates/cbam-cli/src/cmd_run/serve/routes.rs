//! The live page's HTTP routes: the page itself (embedded, no external files), the stream of
//! frame updates as server-sent events, the current frame as a PNG and the current state as
//! JSON for scripts.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};

use super::Slot;
use crate::overlay;
use cbam_compiler::prune::plot::encode_png;

const PAGE: &str = include_str!("page.html");

/// At most this many updates per second go to one viewer; frames in between are skipped
/// for that viewer (a browser cannot draw 1000 frames/s, and a Pi should not send them).
const MAX_UPDATES_PER_SECOND: u64 = 20;

/// Serves the page on `listener` until the process ends.
pub(super) async fn serve(listener: std::net::TcpListener, slot: Slot) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, router(slot)).await
}

fn router(slot: Slot) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/frame.png", get(frame_png))
        .route("/state.json", get(state_json))
        .with_state(slot)
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// Each viewer gets the newest frame when it can take one: the watch stream yields only the
/// latest value, and the throttle spaces the yields out.
async fn events(State(slot): State<Slot>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let updates = WatchStream::new(slot)
        .throttle(Duration::from_millis(1000 / MAX_UPDATES_PER_SECOND))
        .filter_map(|snapshot| {
            let snapshot = snapshot?;
            // The metadata is plain numbers and strings; serialising it cannot fail.
            let json = serde_json::to_string(&snapshot.meta).ok()?;
            Some(Ok::<Event, Infallible>(Event::default().data(json)))
        });
    Sse::new(updates).keep_alive(KeepAlive::default())
}

#[derive(Deserialize)]
struct FrameQuery {
    /// Which CBAM block's spatial attention to draw; none drawn when out of range.
    block: Option<usize>,
}

/// The newest frame (whatever `id` the page put in the URL to defeat caching) with the
/// chosen block's attention over it.
async fn frame_png(State(slot): State<Slot>, Query(query): Query<FrameQuery>) -> Response {
    let Some(snapshot) = slot.borrow().clone() else {
        return (StatusCode::NOT_FOUND, "no frame has run yet").into_response();
    };
    let map = snapshot.maps.get(query.block.unwrap_or(0));
    let panel = overlay::panel(&snapshot.preview, map, "");
    match encode_png(&panel) {
        Ok(png) => (
            [
                (header::CONTENT_TYPE, "image/png".to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
                (
                    header::HeaderName::from_static("x-frame-id"),
                    snapshot.meta.id.to_string(),
                ),
            ],
            png,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn state_json(State(slot): State<Slot>) -> Response {
    match slot.borrow().clone() {
        Some(snapshot) => Json(snapshot.meta.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no frame has run yet").into_response(),
    }
}
