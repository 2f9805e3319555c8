use super::*;

fn update(index: usize) -> FrameUpdate {
    FrameUpdate {
        source: format!("f{index}"),
        preview: RgbImage::new(4, 4),
        attention: vec![AttentionMap {
            h: 2,
            w: 2,
            values: vec![0.5; 4],
        }],
        channel_attention: vec![vec![0.25; 8]],
        top: vec![ClassView {
            class: index % 2,
            label: "x".into(),
            score: 0.9,
        }],
        latency_ms: 1.0,
        truth: Some((0, "zero".into())),
    }
}

#[test]
fn the_slot_holds_only_the_newest_frame_and_publishing_never_waits() {
    let mut page = LivePage::start("127.0.0.1:0", "m".into(), BackendKind::Core).unwrap();
    // A viewer that never reads: the sender must not block or queue for it.
    let idle = page.slot.subscribe();
    for i in 0..1000 {
        page.publish(update(i));
    }
    let newest = idle.borrow().clone().unwrap();
    assert_eq!(newest.meta.id, 999);
    assert_eq!(newest.meta.source, "f999");
    assert_eq!(newest.meta.blocks, 1);
    assert_eq!(newest.meta.stats.frames, 1000);
    let acc = newest.meta.stats.accuracy.unwrap();
    assert_eq!((acc.correct, acc.labelled), (500, 1000));
    page.end();
    let ended = idle.borrow().clone().unwrap();
    assert!(ended.meta.ended && ended.meta.id == 999);
    assert!(page.url().starts_with("http://127.0.0.1:"));
}

#[test]
fn an_address_that_cannot_be_bound_says_what_to_pass() {
    for addr in ["not-an-address", "127.0.0.1:99999"] {
        let err = LivePage::start(addr, "m".into(), BackendKind::Core)
            .err()
            .unwrap();
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("--serve {addr}: cannot listen there"))
                && message.contains("127.0.0.1:8080"),
            "{message}"
        );
    }
}
