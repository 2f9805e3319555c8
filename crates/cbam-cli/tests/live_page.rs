//! `cbam run --serve`: the live page in a real browser (Debian's chromium, headless, driven
//! over the DevTools protocol), on the int8 core and on tract, fed through a pipe: the page
//! loads, the frame image updates, and the class it shows is the one `cbam run --json` gives
//! for the same image. Also: an address that cannot be bound is a clear error.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headless_chrome::{Browser, LaunchOptions, Tab};

const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn image() -> PathBuf {
    root().join("models/data/images/test_001.png")
}

/// The top class `cbam run --json` gives for the test image.
fn json_top_label(model: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args(["run", s(model), "--input", s(&image()), "--json"])
        .output()
        .expect("cbam runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["frames"][0]["top_k"][0]["label"]
        .as_str()
        .expect("a label")
        .to_string()
}

/// `cbam run MODEL --input - --serve 127.0.0.1:0`, fed the test image as Y4M frames every
/// 50 ms until `stop` is raised; kills the server when dropped.
struct LiveRun {
    child: Child,
    url: String,
    stop: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl LiveRun {
    fn start(model: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cbam"))
            .args(["run", s(model), "--input", "-", "--serve", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cbam starts");
        let gray = image::open(image()).unwrap().to_luma8();
        let mut stdin = child.stdin.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer_stop = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut stream = b"YUV4MPEG2 W28 H28 F20:1 Cmono\n".to_vec();
            while !writer_stop.load(Ordering::Relaxed) {
                stream.extend_from_slice(b"FRAME\n");
                stream.extend_from_slice(gray.as_raw());
                if stdin.write_all(&stream).is_err() {
                    return;
                }
                stream.clear();
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut url = None;
        let mut line = String::new();
        while url.is_none() && stderr.read_line(&mut line).unwrap_or(0) > 0 {
            url = line.trim().strip_prefix("live page: ").map(str::to_string);
            line.clear();
        }
        let url = url.expect("cbam prints the page's address");
        // Keep draining stderr so cbam never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        LiveRun {
            child,
            url,
            stop,
            writer: Some(writer),
        }
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn browser(profile: &Path) -> Browser {
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(CHROMIUM)))
        .headless(true)
        .sandbox(false)
        .user_data_dir(Some(profile.to_path_buf()))
        .args(args)
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .expect("launch options");
    Browser::new(options).unwrap_or_else(|e| {
        panic!("cannot start {CHROMIUM} ({e}); scripts/setup.sh installs Debian's chromium")
    })
}

fn eval(tab: &Tab, js: &str) -> serde_json::Value {
    tab.evaluate(js, false)
        .unwrap_or_else(|e| panic!("{js}: {e}"))
        .value
        .unwrap_or(serde_json::Value::Null)
}

/// The id of the frame the page's image has loaded, once it has loaded one.
fn loaded_frame(tab: &Tab) -> Option<u64> {
    let id = eval(
        tab,
        "(() => { const f = document.getElementById('frame'); \
           return f.complete && f.naturalWidth > 0 ? (f.dataset.loadedId ?? null) : null; })()",
    );
    id.as_str().and_then(|s| s.parse().ok())
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check_page(browser: &Browser, model: &Path) {
    let expected = json_top_label(model);
    let run = LiveRun::start(model);
    let tab = browser.new_tab().expect("a tab");
    // Not wait_until_navigated: the page's event stream never lets the network go idle.
    tab.navigate_to(&run.url).expect("the page starts loading");
    wait_for("the page to load", || {
        (eval(
            &tab,
            "document.readyState === 'complete' ? document.title : null",
        ) == "cbam run: live")
            .then_some(())
    });
    let first = wait_for("a first frame image", || loaded_frame(&tab));
    let later = wait_for("the frame image to update", || {
        loaded_frame(&tab).filter(|&id| id != first)
    });
    assert!(later > first, "frame ids go up: {first} then {later}");
    let shown = eval(
        &tab,
        "document.querySelector('#classes li .label').textContent",
    );
    assert_eq!(
        shown.as_str(),
        Some(expected.as_str()),
        "{}",
        model.display()
    );
    let scores = eval(&tab, "document.querySelectorAll('#classes li').length");
    assert_eq!(scores, 3, "the top-3 classes are listed");
    let fps = eval(&tab, "Number(document.getElementById('fps').textContent)");
    assert!(
        fps.as_f64().is_some_and(|f| f > 0.0),
        "frames/s shown: {fps}"
    );
    let bars = eval(&tab, "document.querySelectorAll('#channels div').length");
    assert!(
        bars.as_u64().is_some_and(|n| n > 0),
        "channel attention bars: {bars}"
    );
    let _ = tab.close(true);
}

#[test]
fn the_live_page_shows_frames_and_the_class_on_core_and_tract() {
    let profile = tempfile::tempdir().unwrap();
    let browser = browser(profile.path());
    check_page(&browser, &root().join("models/fmnist_cbam.cbam"));
    check_page(&browser, &root().join("models/fmnist_cbam.onnx"));
}

#[test]
fn an_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_cbam"))
        .args([
            "run",
            s(&root().join("models/fmnist_cbam.cbam")),
            "--input",
            s(&image()),
            "--serve",
            &addr,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("--serve {addr}: cannot listen there")),
        "{stderr}"
    );
}
