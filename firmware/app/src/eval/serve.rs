//! The request loop over a byte port: frames in, one answer out per frame.

use cbam_link::{DeviceError, FrameReceiver, Incoming, Reply, Responder};
use embedded_io::{Read, ReadReady, Write};

use crate::counter::Counter;
use crate::eval::meter::LinkMeter;
use crate::eval::session::Session;

/// Bytes taken from the port per read.
const READ_CHUNK: usize = 256;

/// Answers requests until the host closes the link (`Ok`) or the port fails.
pub fn serve<P, C>(port: &mut P, counter: &mut C, session: &mut Session<'_>) -> Result<(), P::Error>
where
    P: Read + ReadReady + Write,
    C: Counter,
{
    let mut receiver = FrameReceiver::new();
    let mut responder = Responder::new();
    let mut meter = LinkMeter::default();
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        if !port.read_ready()? {
            continue;
        }
        let start = counter.now();
        let n = port.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        meter.resume(start);
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let (used, frame) = receiver.push(rest);
            rest = &rest[used..];
            let Some(frame) = frame else { continue };
            match responder.accept(frame) {
                Incoming::Request { seq, request } => {
                    let reply = session.handle(request, counter, &mut meter);
                    let bytes = match responder.reply(seq, &reply) {
                        Ok(bytes) => bytes,
                        Err(_) => {
                            error!("a reply did not fit its frame");
                            responder.last_reply()
                        }
                    };
                    port.write_all(bytes)?;
                }
                Incoming::Repeat => port.write_all(responder.last_reply())?,
                Incoming::Corrupt => port.write_all(responder.nak())?,
                Incoming::Malformed { seq } => {
                    warn!("request {=u16} is not one this firmware understands", seq);
                    let failed = Reply::Failed(DeviceError::Malformed);
                    if let Ok(bytes) = responder.reply(seq, &failed) {
                        port.write_all(bytes)?;
                    }
                }
                Incoming::Ignore => {}
            }
        }
        port.flush()?;
        meter.pause(counter.now());
    }
}
