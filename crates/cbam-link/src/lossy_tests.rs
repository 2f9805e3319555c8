//! Both ends of the protocol over a channel that damages, drops, duplicates, truncates
//! and invents bytes in both directions. Whatever it does, every reply the host takes is
//! the right one for its request, and the device runs every input exactly once.

use std::collections::VecDeque;

use proptest::prelude::*;

use crate::device::{Incoming, Responder};
use crate::host::{Event, LinkError, Requester};
use crate::message;
use crate::message::{CounterUnit, Identity, Output, Reply, Request, MAX_CHUNK};
use crate::receiver::FrameReceiver;

/// Decides, per frame written, what the channel does to it.
struct Faults {
    state: u64,
    /// Probability (per mille) that a frame is tampered with.
    rate: u64,
}

impl Faults {
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Appends `frame` to `wire` as the channel delivers it.
    fn carry(&mut self, frame: &[u8], wire: &mut VecDeque<u8>) {
        if self.below(1000) >= self.rate {
            wire.extend(frame);
            return;
        }
        let mut bytes = frame.to_vec();
        match self.below(6) {
            0 => return, // lost
            1 => {
                let i = self.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << self.below(8);
            }
            2 => {
                let cut = self.below(bytes.len() as u64) as usize;
                bytes.truncate(cut);
            }
            3 => {
                let i = self.below(bytes.len() as u64) as usize;
                bytes.remove(i);
            }
            4 => {
                let garbage = self.below(40) as usize;
                for _ in 0..garbage {
                    wire.push_back(self.next() as u8);
                }
            }
            _ => wire.extend(frame.iter().copied()), // duplicated
        }
        wire.extend(bytes);
    }
}

/// The expected output of the stand-in model: a digest of the whole input.
fn model(input: &[u8]) -> [u8; 6] {
    let crc = cbam_core::crc32(input).to_le_bytes();
    let len = (input.len() as u16).to_le_bytes();
    [crc[0], crc[1], crc[2], crc[3], len[0], len[1]]
}

/// The device: the real receiver and responder around a stand-in model.
struct Device {
    rx: FrameReceiver,
    responder: Responder,
    input: Vec<u8>,
    input_len: usize,
    output: [u8; 6],
    runs: usize,
    logs: u16,
}

impl Device {
    fn new(input_len: usize) -> Self {
        Self {
            rx: FrameReceiver::new(),
            responder: Responder::new(),
            input: Vec::new(),
            input_len,
            output: [0; 6],
            runs: 0,
            logs: 0,
        }
    }

    /// Reads everything the host sent and writes its answers.
    fn serve(&mut self, from_host: &mut VecDeque<u8>, to_host: &mut VecDeque<u8>, f: &mut Faults) {
        let bytes: Vec<u8> = from_host.drain(..).collect();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (used, got) = self.rx.push(rest);
            rest = &rest[used..];
            let Some(got) = got else { continue };
            let answer: Vec<u8> = match self.responder.accept(got) {
                Incoming::Request { seq, request } => {
                    let reply = handle(
                        request,
                        &mut self.input,
                        self.input_len,
                        &mut self.output,
                        &mut self.runs,
                    );
                    self.responder.reply(seq, &reply).expect("fits").to_vec()
                }
                Incoming::Repeat => self.responder.last_reply().to_vec(),
                Incoming::Corrupt => self.responder.nak().to_vec(),
                Incoming::Malformed { .. } | Incoming::Ignore => {
                    panic!("the channel cannot forge a valid frame")
                }
            };
            f.carry(&answer, to_host);
            if f.below(4) == 0 {
                let mut log = heapless::Vec::<u8, 64>::new();
                message::encode_log::<32, 64>(self.logs, b"defmt bytes", &mut log).expect("fits");
                self.logs += 1;
                f.carry(&log, to_host);
            }
        }
    }
}

fn handle<'o>(
    request: Request<'_>,
    input: &mut Vec<u8>,
    input_len: usize,
    output: &'o mut [u8; 6],
    runs: &mut usize,
) -> Reply<'o> {
    match request {
        Request::Hello => {
            input.clear();
            Reply::Identity(Identity {
                version: message::PROTOCOL_VERSION,
                unit: CounterUnit::Instructions,
                status: Ok(()),
                model_crc: 7,
                input_len: input_len as u32,
                output_len: 6,
                needed: 0,
                capacity: 0,
                board: "sim",
                build: "test",
            })
        }
        Request::Input { offset, data } => {
            assert_eq!(offset as usize, input.len(), "chunks arrive in order, once");
            input.extend_from_slice(data);
            if input.len() < input_len {
                return Reply::Ack {
                    received: input.len() as u32,
                };
            }
            *output = model(input);
            input.clear();
            *runs += 1;
            Reply::Output(Output {
                model_count: *runs as u64,
                link_count: 0,
                data: &output[..],
            })
        }
    }
}

/// The host side of one exchange: sends `request`, drives the device, returns the reply.
struct Host {
    rx: FrameReceiver,
    requester: Requester,
}

#[derive(Debug, PartialEq)]
enum Got {
    Identity(u32),
    Ack(u32),
    Output(Vec<u8>),
}

impl Host {
    fn exchange(
        &mut self,
        request: Request<'_>,
        device: &mut Device,
        faults: &mut Faults,
    ) -> Result<Got, LinkError> {
        let mut to_device = VecDeque::new();
        let mut to_host = VecDeque::new();
        let frame = self.requester.request(&request)?.to_vec();
        faults.carry(&frame, &mut to_device);
        loop {
            device.serve(&mut to_device, &mut to_host, faults);
            let bytes: Vec<u8> = to_host.drain(..).collect();
            let mut rest = &bytes[..];
            let mut resend = false;
            while !rest.is_empty() {
                let (used, got) = self.rx.push(rest);
                rest = &rest[used..];
                let Some(got) = got else { continue };
                match self.requester.accept(got)? {
                    Event::Reply(reply) => return Ok(taken(reply)),
                    Event::Resend => resend = true,
                    Event::Log(bytes) => assert_eq!(bytes, b"defmt bytes"),
                    Event::Ignored => {}
                }
            }
            if resend {
                faults.carry(self.requester.frame(), &mut to_device);
            } else if to_device.is_empty() {
                // Both directions are quiet and no answer came: the timer runs out.
                let frame = self.requester.timed_out()?.to_vec();
                faults.carry(&frame, &mut to_device);
            }
        }
    }
}

fn taken(reply: Reply<'_>) -> Got {
    match reply {
        Reply::Identity(id) => Got::Identity(id.input_len),
        Reply::Ack { received } => Got::Ack(received),
        Reply::Output(o) => Got::Output(o.data.to_vec()),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Streams `images` through the faulty channel; returns the device's run count.
fn stream(images: &[Vec<u8>], seed: u64, rate: u64, attempts: u32) -> Result<usize, LinkError> {
    let input_len = images.first().map_or(1, Vec::len);
    let mut device = Device::new(input_len);
    let mut faults = Faults {
        state: seed | 1,
        rate,
    };
    let mut host = Host {
        rx: FrameReceiver::new(),
        requester: Requester::new(attempts),
    };
    let hello = host.exchange(Request::Hello, &mut device, &mut faults)?;
    assert_eq!(hello, Got::Identity(input_len as u32));
    for image in images {
        let mut offset = 0;
        for chunk in image.chunks(MAX_CHUNK) {
            let got = host.exchange(
                Request::Input {
                    offset: offset as u32,
                    data: chunk,
                },
                &mut device,
                &mut faults,
            )?;
            offset += chunk.len();
            if offset < image.len() {
                assert_eq!(got, Got::Ack(offset as u32));
            } else {
                assert_eq!(got, Got::Output(model(image).to_vec()));
            }
        }
    }
    Ok(device.runs)
}

fn images(seed: u64, count: usize, len: usize) -> Vec<Vec<u8>> {
    let mut f = Faults {
        state: seed | 1,
        rate: 0,
    };
    (0..count)
        .map(|_| (0..len).map(|_| f.next() as u8).collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_faulty_link_never_delivers_a_wrong_reply(
        seed in any::<u64>(),
        rate in 0u64..=200,
        count in 1usize..6,
        len in 1usize..3 * MAX_CHUNK,
    ) {
        let images = images(seed ^ 0x5EED, count, len);
        let runs = stream(&images, seed, rate, 40).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(runs, count, "every input runs exactly once");
    }
}

#[test]
fn a_clean_link_needs_no_resend() {
    let images = images(1, 3, 2 * MAX_CHUNK + 5);
    assert_eq!(stream(&images, 9, 0, 1), Ok(3));
}

#[test]
fn a_dead_link_is_declared_after_the_attempt_limit() {
    let images = images(2, 1, 10);
    assert_eq!(
        stream(&images, 3, 1000, 5),
        Err(LinkError::Unanswered { attempts: 5 })
    );
}

#[test]
fn the_channel_model_is_not_a_no_op() {
    let mut f = Faults {
        state: 5,
        rate: 1000,
    };
    let frame = [0u8, 1, 2, 3, 0];
    let mut changed = 0;
    for _ in 0..100 {
        let mut wire = VecDeque::new();
        f.carry(&frame, &mut wire);
        changed += usize::from(wire.iter().copied().ne(frame.iter().copied()));
    }
    assert!(changed > 80, "{changed} of 100 frames were tampered with");
}
