//! Frames in parallel: `cbam eval`, `cbam run` and the benchmark engine spread independent
//! inferences over worker threads, each with its own state (the core's arena and output, a
//! scratch input), and hand the results back in input order. The int8 core stays
//! single-threaded; only whole frames are shared out.
//!
//! Self-contained (std only) so that the bench binaries can include it as well.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;

/// The most threads `--threads` takes: each worker holds an arena and a stack, and no
/// board this tool targets has more cores.
pub const MAX_THREADS: usize = 256;

/// Parses a `--threads` value: 0 (every core) to [`MAX_THREADS`].
pub fn threads_arg(value: &str) -> Result<usize, String> {
    let n: usize = value
        .parse()
        .map_err(|_| format!("`{value}` is not a thread count (0: every core)"))?;
    if n > MAX_THREADS {
        return Err(format!(
            "{n} threads is more than the {MAX_THREADS} this tool runs"
        ));
    }
    Ok(n)
}

/// The thread count a `--threads` value asks for: `0` means every core the OS gives this
/// process (at least 1, at most [`MAX_THREADS`]).
pub fn resolve_threads(requested: usize) -> usize {
    if requested > 0 {
        return requested.min(MAX_THREADS);
    }
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_THREADS)
}

/// How `cbam run` and `cbam eval` use their `--threads`: frames in parallel, or with
/// `--split-layers` one frame at a time with its layers split over them.
#[derive(Clone, Copy, Debug)]
pub struct ThreadPlan {
    /// Workers, each running whole frames.
    pub frames: usize,
    /// Threads each frame's layers are split over (the int8 core only).
    pub layers: usize,
}

impl ThreadPlan {
    /// From a `--threads` value (0: every core) and `--split-layers`.
    pub fn new(requested: usize, split_layers: bool) -> Self {
        let threads = resolve_threads(requested);
        if split_layers {
            Self {
                frames: 1,
                layers: threads,
            }
        } else {
            Self {
                frames: threads,
                layers: 1,
            }
        }
    }
}

/// `f(state, i)` for every `i` in `0..n` over up to `threads` workers, each with its own
/// state from `init`; the results in index order. Workers take the next index as they free
/// up, so a slow frame does not hold back the rest. On the first error the workers stop
/// taking new indices and the error of the lowest failing index is returned (so the
/// answer does not depend on scheduling when several fail).
pub fn map_ordered<S, T, E, I, F>(n: usize, threads: usize, init: I, f: F) -> Result<Vec<T>, E>
where
    T: Send,
    E: Send,
    I: Fn() -> Result<S, E> + Sync,
    F: Fn(&mut S, usize) -> Result<T, E> + Sync,
{
    let workers = threads.clamp(1, n.max(1));
    if workers == 1 {
        let mut state = init()?;
        return (0..n).map(|i| f(&mut state, i)).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let errors: Mutex<Vec<(usize, E)>> = Mutex::new(Vec::new());
    let parts: Vec<Vec<(usize, T)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    let mut state = match init() {
                        Ok(s) => s,
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            push_error(&errors, 0, e);
                            return done;
                        }
                    };
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        match f(&mut state, i) {
                            Ok(t) => done.push((i, t)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                push_error(&errors, i, e);
                            }
                        }
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort_by_key(|(i, _)| *i);
    if let Some((_, e)) = errors.into_iter().next() {
        return Err(e);
    }
    let mut all: Vec<(usize, T)> = parts.into_iter().flatten().collect();
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

fn push_error<E>(errors: &Mutex<Vec<(usize, E)>>, index: usize, error: E) {
    errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((index, error));
}

/// A stream of jobs whose number is not known in advance (camera frames, files read one by
/// one): `submit` hands a job to the workers, and results come back through `emit` strictly
/// in submission order. With no state (no worker) nothing runs and nothing is emitted. At most `3 * threads` jobs are in flight (queued, running or
/// waiting for an earlier one), so a fast source cannot
/// queue frames without bound.
pub struct OrderedStream<'scope, J, R> {
    jobs: Option<mpsc::SyncSender<(usize, J)>>,
    results: mpsc::Receiver<(usize, R)>,
    pending: BTreeMap<usize, R>,
    submitted: usize,
    emitted: usize,
    in_flight: usize,
    _scope: std::marker::PhantomData<&'scope ()>,
}

impl<'scope, J: Send + 'scope, R: Send + 'scope> OrderedStream<'scope, J, R> {
    /// Starts one worker in `scope` per state of `states`, each running
    /// `work(&mut its_state, job)`.
    pub fn start<'env, S, W>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        states: Vec<S>,
        work: W,
    ) -> Self
    where
        W: Fn(&mut S, J) -> R + Send + Sync + 'scope,
        S: Send + 'scope,
    {
        let threads = states.len().max(1);
        let (job_tx, job_rx) = mpsc::sync_channel::<(usize, J)>(threads * 2);
        let (result_tx, results) = mpsc::channel();
        let job_rx = std::sync::Arc::new(Mutex::new(job_rx));
        let work = std::sync::Arc::new(work);
        for mut state in states {
            let (job_rx, result_tx, work) = (job_rx.clone(), result_tx.clone(), work.clone());
            scope.spawn(move || loop {
                let job = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((index, job)) = job else { break };
                if result_tx.send((index, work(&mut state, job))).is_err() {
                    break;
                }
            });
        }
        OrderedStream {
            jobs: Some(job_tx),
            results,
            pending: BTreeMap::new(),
            submitted: 0,
            emitted: 0,
            in_flight: threads * 3,
            _scope: std::marker::PhantomData,
        }
    }

    /// Hands `job` to the workers (waits while `3 * threads` are in flight), then emits the
    /// results that are ready, in order. Stops at the first `Err` of `emit`.
    pub fn submit<E>(
        &mut self,
        job: J,
        emit: &mut impl FnMut(R) -> Result<(), E>,
    ) -> Result<(), E> {
        while self.submitted - self.emitted >= self.in_flight {
            if !self.wait_one(emit)? {
                break;
            }
        }
        if let Some(jobs) = &self.jobs {
            // A send fails only when every worker has gone (a panic, re-raised at scope end).
            if jobs.send((self.submitted, job)).is_ok() {
                self.submitted += 1;
            }
        }
        self.drain_ready(emit)
    }

    /// Waits for every submitted job and emits the rest in order.
    pub fn finish<E>(mut self, emit: &mut impl FnMut(R) -> Result<(), E>) -> Result<(), E> {
        self.jobs = None;
        while self.emitted < self.submitted {
            if !self.wait_one(emit)? {
                break;
            }
        }
        Ok(())
    }

    /// Blocks for one result and emits what is then in order; `false` when no worker is
    /// left to answer.
    fn wait_one<E>(&mut self, emit: &mut impl FnMut(R) -> Result<(), E>) -> Result<bool, E> {
        let Ok((index, result)) = self.results.recv() else {
            return Ok(false);
        };
        self.pending.insert(index, result);
        self.emit_in_order(emit)?;
        Ok(true)
    }

    fn drain_ready<E>(&mut self, emit: &mut impl FnMut(R) -> Result<(), E>) -> Result<(), E> {
        while let Ok((index, result)) = self.results.try_recv() {
            self.pending.insert(index, result);
        }
        self.emit_in_order(emit)
    }

    fn emit_in_order<E>(&mut self, emit: &mut impl FnMut(R) -> Result<(), E>) -> Result<(), E> {
        while let Some(result) = self.pending.remove(&self.emitted) {
            self.emitted += 1;
            emit(result)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn map_ordered_returns_results_in_input_order_with_one_state_per_worker() {
        for threads in [1, 2, 4, 64] {
            let inits = AtomicUsize::new(0);
            let out = map_ordered(
                50,
                threads,
                || {
                    inits.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, String>(Vec::new())
                },
                |seen: &mut Vec<usize>, i| {
                    // Uneven work so that workers finish out of order.
                    std::thread::sleep(Duration::from_micros((i % 7) as u64 * 50));
                    seen.push(i);
                    Ok(i * 10 + seen.len().min(1))
                },
            )
            .unwrap();
            assert_eq!(out, (0..50).map(|i| i * 10 + 1).collect::<Vec<_>>());
            let workers = inits.load(Ordering::Relaxed);
            assert!(
                workers >= 1 && workers <= threads.min(50),
                "{workers} states"
            );
        }
    }

    #[test]
    fn map_ordered_reports_the_lowest_failing_index() {
        for threads in [1, 3] {
            let result = map_ordered(
                40,
                threads,
                || Ok(()),
                |(), i| {
                    if i == 5 {
                        // Give a later failure time to happen first on another worker.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    if i == 5 || i == 9 {
                        Err(format!("sample {i}"))
                    } else {
                        Ok(i)
                    }
                },
            );
            assert_eq!(result, Err("sample 5".to_string()));
        }
    }

    #[test]
    fn map_ordered_handles_no_work_and_a_failing_state() {
        let empty = map_ordered(0, 4, || Ok::<_, ()>(()), |(), i| Ok(i));
        assert_eq!(empty, Ok(vec![]));
        let failed = map_ordered(8, 2, || Err::<(), _>("no arena"), |(), i| Ok(i));
        assert_eq!(failed, Err("no arena"));
    }

    #[test]
    fn ordered_stream_emits_in_submission_order() {
        for threads in [1, 2, 5] {
            let mut emitted = Vec::new();
            std::thread::scope(|scope| {
                let mut stream = OrderedStream::start(
                    scope,
                    (0..threads).collect(),
                    |_: &mut usize, job: u64| {
                        std::thread::sleep(Duration::from_micros((job * 37) % 400));
                        job * 2
                    },
                );
                let mut emit = |r: u64| {
                    emitted.push(r);
                    Ok::<_, ()>(())
                };
                for job in 0..60 {
                    stream.submit(job, &mut emit).unwrap();
                }
                stream.finish(&mut emit).unwrap();
            });
            assert_eq!(emitted, (0..60).map(|j| j * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn ordered_stream_stops_at_the_first_emit_error() {
        std::thread::scope(|scope| {
            let mut stream = OrderedStream::start(scope, vec![(), ()], |(), job: u32| job);
            let mut emit = |r: u32| if r == 3 { Err(r) } else { Ok(()) };
            let mut result = Ok(());
            for job in 0..10 {
                result = stream.submit(job, &mut emit);
                if result.is_err() {
                    break;
                }
            }
            let result = result.and_then(|()| stream.finish(&mut emit));
            assert_eq!(result, Err(3));
        });
    }

    #[test]
    fn zero_threads_means_every_core() {
        assert!(resolve_threads(0) >= 1);
        assert_eq!(resolve_threads(3), 3);
    }
}
