//! What the evaluation firmware does with each request: the model, its buffers and the
//! input being assembled.

use cbam_core::le::{as_i8, as_i8_mut, as_u8};
use cbam_core::Model;
use cbam_link::{CounterUnit, DeviceError, Identity, Output, Reply, Request, MAX_OUTPUT};

use crate::counter::{Counter, CounterKind};
use crate::eval::meter::LinkMeter;

/// What the firmware says about itself in its `Identity`.
#[derive(Clone, Copy, Debug)]
pub struct Firmware<'a> {
    pub board: &'a str,
    pub build: &'a str,
    pub counter: CounterKind,
}

/// The model with the arena, input and output cut from the firmware's buffer.
struct Loaded<'a> {
    model: Model<'a>,
    arena: &'a mut [u8],
    input: &'a mut [i8],
    output: &'a mut [i8],
}

/// The state between requests.
pub struct Session<'a> {
    firmware: Firmware<'a>,
    loaded: Result<Loaded<'a>, DeviceError>,
    model_crc: u32,
    needed: usize,
    capacity: usize,
    input_len: usize,
    output_len: usize,
    /// Input bytes of the next inference received so far.
    received: usize,
    /// Inferences run, for the closing log line.
    pub runs: u32,
}

impl<'a> Session<'a> {
    /// Validates `blob` and cuts `buffer` into arena, input and output. A model that is
    /// missing, invalid or too large is not an error here: the session then answers every
    /// request with the reason, so the host can tell the user.
    pub fn new(blob: &'a [u8], buffer: &'a mut [u8], firmware: Firmware<'a>) -> Self {
        let capacity = buffer.len();
        let mut session = Session {
            firmware,
            loaded: Err(DeviceError::NoModel),
            model_crc: 0,
            needed: 0,
            capacity,
            input_len: 0,
            output_len: 0,
            received: 0,
            runs: 0,
        };
        let model = match Model::parse(blob) {
            Ok(model) => model,
            Err(e) => {
                error!("no valid model blob: {}", e);
                return session;
            }
        };
        session.model_crc = model.crc();
        session.input_len = model.input().len();
        session.output_len = model.output().len();
        session.needed = model.arena_size() + session.input_len + session.output_len;
        session.loaded = session.check(&model).map(|()| {
            let (arena, rest) = buffer.split_at_mut(model.arena_size());
            let (input, rest) = rest.split_at_mut(session.input_len);
            let output = &mut rest[..session.output_len];
            Loaded {
                model,
                arena,
                input: as_i8_mut(input),
                output: as_i8_mut(output),
            }
        });
        match &session.loaded {
            Ok(_) => info!(
                "model {=u32:#010x}: {=usize} bytes of {=usize} in use, input {=usize}, output {=usize}",
                session.model_crc,
                session.needed,
                capacity,
                session.input_len,
                session.output_len
            ),
            Err(e) => error!("cannot evaluate this model: {}", e),
        }
        session
    }

    fn check(&self, model: &Model<'_>) -> Result<(), DeviceError> {
        if self.needed > self.capacity {
            return Err(DeviceError::BufferTooSmall {
                needed: saturate(self.needed),
                capacity: saturate(self.capacity),
            });
        }
        if model.output().len() > MAX_OUTPUT {
            return Err(DeviceError::OutputTooLarge {
                len: saturate(self.output_len),
                max: saturate(MAX_OUTPUT),
            });
        }
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        self.loaded.is_ok()
    }

    /// Carries out one request. The inference is timed alone; the meter is paused around
    /// it and its reading so far travels with the output.
    pub fn handle<C: Counter>(
        &mut self,
        request: Request<'_>,
        counter: &mut C,
        meter: &mut LinkMeter,
    ) -> Reply<'_> {
        match request {
            Request::Hello => {
                self.received = 0;
                Reply::Identity(self.identity())
            }
            Request::Input { offset, data } => match self.take_input(offset, data) {
                Err(e) => Reply::Failed(e),
                Ok(false) => Reply::Ack {
                    received: saturate(self.received),
                },
                Ok(true) => self.infer(counter, meter),
            },
        }
    }

    fn identity(&self) -> Identity<'a> {
        Identity {
            version: cbam_link::PROTOCOL_VERSION,
            unit: match self.firmware.counter {
                CounterKind::Cycles => CounterUnit::Cycles,
                CounterKind::Instructions => CounterUnit::Instructions,
            },
            status: self.loaded.as_ref().map(|_| ()).map_err(|e| *e),
            model_crc: self.model_crc,
            input_len: saturate(self.input_len),
            output_len: saturate(self.output_len),
            needed: saturate(self.needed),
            capacity: saturate(self.capacity),
            board: self.firmware.board,
            build: self.firmware.build,
        }
    }

    /// Copies a chunk into the input; `Ok(true)` when the input is complete.
    fn take_input(&mut self, offset: u32, data: &[u8]) -> Result<bool, DeviceError> {
        let loaded = self.loaded.as_mut().map_err(|e| *e)?;
        if offset == 0 {
            self.received = 0;
        }
        if offset as usize != self.received {
            return Err(DeviceError::InputOutOfOrder {
                expected: saturate(self.received),
                offset,
            });
        }
        let end = self.received + data.len();
        let slot = loaded
            .input
            .get_mut(self.received..end)
            .ok_or(DeviceError::InputTooLong {
                end: saturate(end),
                len: saturate(self.input_len),
            })?;
        slot.copy_from_slice(as_i8(data));
        self.received = end;
        Ok(end == self.input_len)
    }

    fn infer<C: Counter>(&mut self, counter: &mut C, meter: &mut LinkMeter) -> Reply<'_> {
        self.received = 0;
        let Ok(loaded) = self.loaded.as_mut() else {
            return Reply::Failed(DeviceError::NoModel);
        };
        meter.pause(counter.now());
        let link_count = meter.take();
        let Loaded {
            model,
            arena,
            input,
            output,
        } = loaded;
        let (result, model_count) = counter.measure(|| model.run(arena, input, output));
        meter.resume(counter.now());
        if let Err(e) = result {
            error!("inference failed: {}", e);
            return Reply::Failed(DeviceError::Inference);
        }
        self.runs += 1;
        Reply::Output(Output {
            model_count,
            link_count,
            data: as_u8(output),
        })
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::tests::Steps;

    const FIRMWARE: Firmware<'static> = Firmware {
        board: "host",
        build: "test",
        counter: CounterKind::Instructions,
    };

    fn blob() -> std::vec::Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fmnist_cbam.cbam");
        std::fs::read(path).expect("the committed example blob")
    }

    fn host_output(blob: &[u8], input: &[i8]) -> std::vec::Vec<i8> {
        let model = Model::parse(blob).expect("valid");
        let mut arena = std::vec![0u8; model.arena_size()];
        let mut out = std::vec![0i8; model.output().len()];
        model.run(&mut arena, input, &mut out).expect("runs");
        out
    }

    #[test]
    fn chunks_assemble_an_input_and_the_output_is_the_host_cores() {
        let blob = blob();
        let mut buffer = std::vec![0u8; 512 * 1024];
        let mut session = Session::new(&blob, &mut buffer, FIRMWARE);
        assert!(session.is_ready());
        let (mut counter, mut meter) = (Steps(0), LinkMeter::default());
        let pixels: std::vec::Vec<u8> = (0..784).map(|i| (i * 7 % 251) as u8).collect();
        let first = Request::Input {
            offset: 0,
            data: &pixels[..500],
        };
        assert_eq!(
            session.handle(first, &mut counter, &mut meter),
            Reply::Ack { received: 500 }
        );
        let rest = Request::Input {
            offset: 500,
            data: &pixels[500..],
        };
        let expected = host_output(&blob, as_i8(&pixels));
        match session.handle(rest, &mut counter, &mut meter) {
            Reply::Output(o) => {
                assert_eq!(o.data, as_u8(&expected));
                assert!(o.model_count > 0);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(session.runs, 1);
    }

    #[test]
    fn out_of_order_and_overlong_chunks_are_refused() {
        let blob = blob();
        let mut buffer = std::vec![0u8; 512 * 1024];
        let mut session = Session::new(&blob, &mut buffer, FIRMWARE);
        let (mut counter, mut meter) = (Steps(0), LinkMeter::default());
        let skip = Request::Input {
            offset: 4,
            data: &[1],
        };
        assert_eq!(
            session.handle(skip, &mut counter, &mut meter),
            Reply::Failed(DeviceError::InputOutOfOrder {
                expected: 0,
                offset: 4
            })
        );
        let long = [0u8; 785];
        let over = Request::Input {
            offset: 0,
            data: &long,
        };
        assert_eq!(
            session.handle(over, &mut counter, &mut meter),
            Reply::Failed(DeviceError::InputTooLong { end: 785, len: 784 })
        );
    }

    #[test]
    fn a_small_buffer_or_a_missing_model_is_reported_in_the_identity() {
        let blob = blob();
        let mut small = std::vec![0u8; 1024];
        let mut session = Session::new(&blob, &mut small, FIRMWARE);
        let (mut counter, mut meter) = (Steps(0), LinkMeter::default());
        match session.handle(Request::Hello, &mut counter, &mut meter) {
            Reply::Identity(id) => {
                assert!(matches!(
                    id.status,
                    Err(DeviceError::BufferTooSmall { capacity: 1024, .. })
                ));
                assert_eq!((id.input_len, id.board), (784, "host"));
            }
            other => panic!("{other:?}"),
        }
        let mut buffer = std::vec![0u8; 64];
        let mut empty = Session::new(&[0u8; 128], &mut buffer, FIRMWARE);
        let input = Request::Input {
            offset: 0,
            data: &[1],
        };
        assert_eq!(
            empty.handle(input, &mut counter, &mut meter),
            Reply::Failed(DeviceError::NoModel)
        );
    }
}
