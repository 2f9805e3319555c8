//! Per-layer latency of one inference, through the core's `Observer` hooks.

use cbam_core::{Model, Observer, OpCode};

use crate::counter::Counter;

/// Times every op of a run and logs it with its MACs and output size.
pub struct LayerTimer<'m, 'c, C: Counter> {
    model: &'m Model<'m>,
    counter: &'c mut C,
    started: u64,
    /// Sum of the ops' own counts (the log lines between ops are not in it).
    pub total: u64,
}

impl<'m, 'c, C: Counter> LayerTimer<'m, 'c, C> {
    pub fn new(model: &'m Model<'m>, counter: &'c mut C) -> Self {
        Self {
            model,
            counter,
            started: 0,
            total: 0,
        }
    }
}

impl<C: Counter> Observer for LayerTimer<'_, '_, C> {
    fn op_start(&mut self, _index: usize, _code: OpCode) {
        // Read last, so the previous op's log line is not charged to this op.
        self.started = self.counter.now();
    }

    fn op_end(&mut self, index: usize, code: OpCode, output: &[i8]) {
        let count = self.counter.now().saturating_sub(self.started);
        self.total += count;
        let macs = self.model.op(index).map_or(0, |op| op.macs);
        let per_mac = (count * 100).checked_div(macs).unwrap_or(0);
        let per_element = (count * 100).checked_div(output.len() as u64).unwrap_or(0);
        info!(
            "layer {=usize} {=str}: {=u64} {=str}, {=u64} MACs ({=u64}.{=u64:02} per MAC), {=usize} outputs ({=u64}.{=u64:02} per output)",
            index,
            code.name(),
            count,
            self.counter.kind().label(),
            macs,
            per_mac / 100,
            per_mac % 100,
            output.len(),
            per_element / 100,
            per_element % 100
        );
    }
}
