//! The latency counter a board provides.

/// What a board's counter counts; the log says which, because an instruction
/// count under QEMU and a cycle count on silicon are not the same quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterKind {
    /// Core clock cycles (DWT CYCCNT, SysTick at the core clock, `mcycle`).
    Cycles,
    /// Retired instructions (QEMU `-icount`, `minstret`).
    Instructions,
}

impl CounterKind {
    pub fn label(self) -> &'static str {
        match self {
            CounterKind::Cycles => "cycles",
            CounterKind::Instructions => "instructions",
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for CounterKind {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.label());
    }
}

/// A free-running, monotonic counter of cycles or instructions.
pub trait Counter {
    fn kind(&self) -> CounterKind;
    /// The count now. Implementations extend narrow hardware counters to 64 bits.
    fn now(&mut self) -> u64;

    /// Runs `f` and returns its result with the count it took.
    fn measure<T>(&mut self, f: impl FnOnce() -> T) -> (T, u64) {
        let start = self.now();
        let value = f();
        (value, self.now().saturating_sub(start))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A counter that advances 7 on every read.
    pub(crate) struct Steps(pub u64);
    impl Counter for Steps {
        fn kind(&self) -> CounterKind {
            CounterKind::Instructions
        }
        fn now(&mut self) -> u64 {
            self.0 += 7;
            self.0
        }
    }

    #[test]
    fn measure_returns_the_difference_of_two_reads() {
        let mut counter = Steps(100);
        let (value, spent) = counter.measure(|| 42);
        assert_eq!((value, spent), (42, 7));
    }

    #[test]
    fn labels_say_what_is_counted() {
        assert_eq!(CounterKind::Cycles.label(), "cycles");
        assert_eq!(CounterKind::Instructions.label(), "instructions");
    }
}
