//! The test run every firmware performs, and its report.

use cbam_core::Model;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;

use crate::counter::Counter;
use crate::input::{encode, InputEncoding};
use crate::layers::LayerTimer;
use crate::summary::Summary;
use crate::testset::{bit_exact, TestSet};

/// How a board ends the program: a semihosting exit code under QEMU or a
/// debug probe, a test-device write on RISC-V `virt`, a halt elsewhere.
pub trait Exit {
    fn exit(&mut self, passed: bool) -> !;
}

/// The board wiring the app needs.
pub struct Board<C, L, D, X> {
    /// Latency counter ("cycles" on silicon, "instructions" under QEMU).
    pub counter: C,
    /// Status LED: steady on after a pass, fast blinks then off after a failure.
    pub led: L,
    pub delay: D,
    pub exit: X,
}

/// Caller-owned memory: the static arena, and an output buffer of the test set's size.
/// There is no input buffer: each image is encoded straight into the arena's input slot
/// ([`Model::input_mut`]), so the input does not occupy RAM twice.
pub struct Buffers<'a> {
    pub arena: &'a mut [u8],
    pub output: &'a mut [i8],
}

/// Why the test run could not even start, or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AppError {
    /// The core rejected the blob or failed an inference.
    Model(cbam_core::Error),
    /// The blob needs more arena than the firmware was built with: rebuild the
    /// firmware with this blob (`CBAM_BLOB=...`).
    ArenaTooSmall { needed: usize, available: usize },
    /// The model's input size differs from the embedded images' size.
    InputShape { model: usize, images: usize },
    /// The model's output size differs from the embedded expected outputs'.
    OutputShape { model: usize, expected: usize },
    /// The build embedded no test images.
    NoImages,
    /// The kernel benchmark's working buffer is too small.
    BenchBufferTooSmall { needed: usize, available: usize },
}

impl From<cbam_core::Error> for AppError {
    fn from(e: cbam_core::Error) -> Self {
        AppError::Model(e)
    }
}

/// What the build says about the firmware: the board name, the run tag and the build
/// (`cbam_testset.rs`'s `BOARD`, `RUN_TAG` and `FIRMWARE_BUILD`).
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    pub board: &'a str,
    pub run_tag: &'a str,
    pub build: &'a str,
}

/// [`run`] with the output buffer on the stack, sized by the build script's constant, so a
/// board's entry point is its wiring plus this one call.
pub fn run_on_stack<C, L, D, X, const OUT: usize>(
    board: Board<C, L, D, X>,
    blob: &[u8],
    arena: &mut [u8],
    set: &TestSet<'_>,
    id: Identity<'_>,
) -> !
where
    C: Counter,
    L: OutputPin,
    D: DelayNs,
    X: Exit,
{
    let mut output = [0i8; OUT];
    let buffers = Buffers {
        arena,
        output: &mut output,
    };
    run(board, blob, buffers, set, id)
}

/// Runs the test set on `blob`, reports it, signals on the LED and exits.
pub fn run<C, L, D, X>(
    mut board: Board<C, L, D, X>,
    blob: &[u8],
    buffers: Buffers<'_>,
    set: &TestSet<'_>,
    id: Identity<'_>,
) -> !
where
    C: Counter,
    L: OutputPin,
    D: DelayNs,
    X: Exit,
{
    info!("{=str}", id.run_tag);
    info!(
        "cbam firmware on {=str}: {=usize} test images",
        id.board,
        set.len()
    );
    let passed = match evaluate(blob, buffers, set, &mut board.counter) {
        Ok(summary) => {
            report(&summary, id.board, board.counter.kind().label());
            summary.passed()
        }
        Err(e) => {
            error!("test run stopped: {}", e);
            false
        }
    };
    signal(&mut board.led, &mut board.delay, passed);
    if passed {
        info!("PASS");
    } else {
        error!("FAIL");
    }
    board.exit.exit(passed)
}

/// Validates the blob and the buffers, then runs every test image.
pub fn evaluate<C: Counter>(
    blob: &[u8],
    buffers: Buffers<'_>,
    set: &TestSet<'_>,
    counter: &mut C,
) -> Result<Summary, AppError> {
    let model = Model::parse(blob)?;
    let Buffers { arena, output } = fit_buffers(&model, buffers, set)?;
    let compared = model.crc() == set.blob_crc;
    if !compared {
        warn!("the model region holds another blob than the build's: outputs are not compared");
    }
    let shape = model.input();
    info!(
        "model: arena {=usize} bytes, input {=usize}x{=usize}x{=usize}, {=usize} outputs",
        arena.len(),
        shape.h,
        shape.w,
        shape.c,
        output.len()
    );
    let encoding = if model.input_is_raw_pixels() {
        InputEncoding::RawPixels
    } else {
        InputEncoding::Tables(set.pixel_luts)
    };

    let mut summary = Summary::new(compared, model.macs(), model.arena_size());
    let mut last_pixels: &[u8] = &[];
    for i in 0..set.len() {
        let Some(case) = set.case(i) else { break };
        encode(encoding, case.pixels, model.input_mut(arena)?);
        last_pixels = case.pixels;
        let (result, count) = counter.measure(|| model.invoke(arena, output));
        result?;
        let class = cbam_core::argmax(output).unwrap_or(0);
        let exact = bit_exact(output, case.expected);
        summary.record(count, exact, case.judge(class));
        info!(
            "image {=usize}: class {=usize} label {=u8} {=u64} {} out={=[?]}",
            i,
            class,
            case.label,
            count,
            counter.kind(),
            output
        );
        if compared && !exact {
            error!(
                "image {=usize}: output differs from the host core's {}",
                i,
                AsI8(case.expected)
            );
        }
    }
    // The ops may have overwritten the input slot: the profile run encodes its image again.
    encode(encoding, last_pixels, model.input_mut(arena)?);
    profile_layers(&model, arena, output, counter)?;
    Ok(summary)
}

/// The caller's buffers cut to the model's sizes, after checking them against
/// the model and the test set (the boot-time arena check lives here).
fn fit_buffers<'b>(
    model: &Model<'_>,
    buffers: Buffers<'b>,
    set: &TestSet<'_>,
) -> Result<Buffers<'b>, AppError> {
    let needed = model.arena_size();
    let available = buffers.arena.len();
    let arena = buffers
        .arena
        .get_mut(..needed)
        .ok_or(AppError::ArenaTooSmall { needed, available })?;
    let input_len = model.input().len();
    if input_len != set.input_len {
        return Err(AppError::InputShape {
            model: input_len,
            images: set.input_len,
        });
    }
    let output_len = model.output().len();
    let output =
        exact_prefix(buffers.output, output_len, set.output_len).ok_or(AppError::OutputShape {
            model: output_len,
            expected: set.output_len,
        })?;
    if set.is_empty() {
        return Err(AppError::NoImages);
    }
    Ok(Buffers { arena, output })
}

/// The first `len` elements of `buf`, when the model's length equals the test set's.
fn exact_prefix(buf: &mut [i8], len: usize, expected: usize) -> Option<&mut [i8]> {
    buf.get_mut(..len).filter(|_| len == expected)
}

/// One more inference (on the input already written into the arena) with every op
/// timed, for the per-layer report.
fn profile_layers<C: Counter>(
    model: &Model<'_>,
    arena: &mut [u8],
    output: &mut [i8],
    counter: &mut C,
) -> Result<(), AppError> {
    let mut timer = LayerTimer::new(model, counter);
    model.invoke_observed(arena, output, &mut timer)?;
    let total = timer.total;
    info!(
        "layers: {=u64} {=str} in {=usize} ops",
        total,
        counter.kind().label(),
        model.n_ops()
    );
    Ok(())
}

fn report(summary: &Summary, name: &str, unit: &str) {
    let per_mac = summary.per_mac_centi();
    let accuracy = summary.accuracy_permille();
    info!(
        "accuracy {=u32}/{=u32} = {=u32}.{=u32}%; bit-exact with the host core: {=u32}/{=u32}",
        summary.correct,
        summary.labeled,
        accuracy / 10,
        accuracy % 10,
        summary.bit_exact,
        summary.images
    );
    info!(
        "latency {=u64} {=str} per inference (min {=u64}, max {=u64}), {=u64}.{=u64:02} per MAC ({=u64} MACs)",
        summary.mean_count(),
        unit,
        summary.min_count,
        summary.max_count,
        per_mac / 100,
        per_mac % 100,
        summary.macs
    );
    // One machine-readable line for firmware/test.sh.
    info!(
        "CBAM-RESULT board={=str} images={=u32} exact={=u32} compared={=bool} correct={=u32} per_inference={=u64} unit={=str} macs={=u64} arena={=usize}",
        name,
        summary.images,
        summary.bit_exact,
        summary.compared,
        summary.correct,
        summary.mean_count(),
        unit,
        summary.macs,
        summary.arena_size
    );
}

/// Logs bytes that hold int8 values (the expected outputs) as int8.
#[cfg_attr(not(feature = "defmt"), allow(dead_code))]
struct AsI8<'a>(&'a [u8]);

#[cfg(feature = "defmt")]
impl defmt::Format for AsI8<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[");
        for (i, &b) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            defmt::write!(f, "{=str}{=i8}", sep, b as i8);
        }
        defmt::write!(f, "]");
    }
}

/// Pass: two slow blinks, then steady on. Fail: six fast blinks, then off.
/// LED errors are ignored: the LED is a courtesy, the exit code is the verdict.
fn signal<L: OutputPin, D: DelayNs>(led: &mut L, delay: &mut D, passed: bool) {
    let (blinks, period_ms) = if passed { (2, 200) } else { (6, 60) };
    for _ in 0..blinks {
        let _ = led.set_high();
        delay.delay_ms(period_ms / 2);
        let _ = led.set_low();
        delay.delay_ms(period_ms / 2);
    }
    if passed {
        let _ = led.set_high();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_model_error_not_a_panic() {
        let mut arena = [0u8; 16];
        let mut output = [0i8; 2];
        let buffers = Buffers {
            arena: &mut arena,
            output: &mut output,
        };
        let lut = [[0i8; 256]];
        let set = TestSet {
            images: &[],
            labels: &[],
            expected: &[],
            input_len: 4,
            output_len: 2,
            pixel_luts: &lut,
            blob_crc: 0,
        };
        struct Zero;
        impl Counter for Zero {
            fn kind(&self) -> crate::CounterKind {
                crate::CounterKind::Cycles
            }
            fn now(&mut self) -> u64 {
                0
            }
        }
        let result = evaluate(b"CBAM but not really", buffers, &set, &mut Zero);
        assert!(matches!(result, Err(AppError::Model(_))), "{result:?}");
    }
}
