//! A fork-join pool for many small jobs in a row: the layers of one inference, each a few
//! microseconds of work. Idle workers spin for a while before they sleep, and the calling
//! thread works and waits by spinning, so a job whose workers are awake starts and joins
//! without a system call. A general pool (rayon's) parks its threads and the caller
//! sooner, and waking them costs more than such a job's work.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it naps: longer than the gap between two layers.
const SPIN: Duration = Duration::from_micros(200);

/// An idle worker's nap, and how long it naps before it sleeps until the caller wakes it:
/// a camera's frames come well within that.
const NAP: Duration = Duration::from_micros(500);
const NAP_FOR: Duration = Duration::from_secs(1);

/// The job in flight: every task index below `n` is run once, by whoever claims it.
type Job<'a> = &'a (dyn Fn(usize) + Sync);

/// State the caller and the workers share.
struct Shared {
    /// `epoch << 32 | n << 16 | next`: which job, how many tasks, the next unclaimed task.
    /// One word, so a claim is checked against the job it belongs to.
    claim: AtomicU64,
    /// The current job (a `Job` on the caller's stack), valid while its epoch's tasks run.
    job: AtomicPtr<Job<'static>>,
    done: AtomicUsize,
    panicked: AtomicBool,
    stop: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

const MAX_TASKS: usize = 0xFFFF;

fn unpack(claim: u64) -> (u64, usize, usize) {
    (
        claim >> 32,
        (claim >> 16) as usize & MAX_TASKS,
        claim as usize & MAX_TASKS,
    )
}

impl Shared {
    /// Claims and runs tasks of job `epoch` until none is left.
    fn work(&self, epoch: u64) {
        let mut claim = self.claim.load(SeqCst);
        loop {
            let (e, n, next) = unpack(claim);
            if e != epoch || next >= n {
                return;
            }
            // The pointer is read before the claim is taken: a claim that succeeds proves
            // the job is still `epoch`'s (the caller replaces the pointer only after every
            // task of it has been claimed and run).
            let job = self.job.load(SeqCst);
            match self
                .claim
                .compare_exchange_weak(claim, claim + 1, SeqCst, SeqCst)
            {
                Ok(_) => {
                    // SAFETY: the claim of task `next` of job `epoch` succeeded, so the job
                    // has a task unfinished and the caller is still inside `run`, keeping
                    // the closure alive.
                    let job = unsafe { *job };
                    if catch_unwind(AssertUnwindSafe(|| job(next))).is_err() {
                        self.panicked.store(true, SeqCst);
                    }
                    self.done.fetch_add(1, SeqCst);
                    claim = self.claim.load(SeqCst);
                }
                Err(now) => claim = now,
            }
        }
    }
}

/// `threads - 1` workers; the thread that calls [`SpinPool::run`] is the last one.
pub struct SpinPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serialises callers: one job at a time.
    caller: Mutex<()>,
}

impl SpinPool {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut pool = SpinPool {
            shared,
            workers: Vec::new(),
            caller: Mutex::new(()),
        };
        for i in 1..threads.max(1) {
            let shared = Arc::clone(&pool.shared);
            let handle = std::thread::Builder::new()
                .name(format!("cbam-layer-{i}"))
                .spawn(move || worker(&shared))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Runs `task(i)` for every `i` in `0..n` over the pool and the calling thread, and
    /// returns when all have finished. `false` if a task panicked.
    pub fn run(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        if n == 0 {
            return true;
        }
        if self.workers.is_empty() || n == 1 {
            return catch_unwind(AssertUnwindSafe(|| (0..n).for_each(task))).is_ok();
        }
        let _one_caller = self.caller.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        let (n_tasks, rest) = (n.min(MAX_TASKS), n.saturating_sub(MAX_TASKS));
        let job: Job<'_> = task;
        let job_ptr: *const Job<'_> = &job;
        // SAFETY (of the workers' later dereference): the pointer is cleared below, after
        // every task has finished, before `job` goes out of scope.
        s.job.store(job_ptr as *mut Job<'static>, SeqCst);
        s.done.store(0, SeqCst);
        s.panicked.store(false, SeqCst);
        let epoch = (unpack(s.claim.load(SeqCst)).0 + 1) & 0xFFFF_FFFF;
        s.claim.store(epoch << 32 | (n_tasks as u64) << 16, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        s.work(epoch);
        while s.done.load(SeqCst) < n_tasks {
            std::hint::spin_loop();
        }
        s.job.store(std::ptr::null_mut(), SeqCst);
        let ok = !s.panicked.load(SeqCst);
        drop(_one_caller);
        ok && (rest == 0 || self.run(rest, &|i| task(i + MAX_TASKS)))
    }
}

fn worker(s: &Shared) {
    let mut seen = 0;
    loop {
        let idle = Instant::now();
        let epoch = loop {
            if s.stop.load(SeqCst) {
                return;
            }
            let (e, _, _) = unpack(s.claim.load(SeqCst));
            if e != seen {
                break e;
            }
            let waited = idle.elapsed();
            if waited < SPIN {
                std::hint::spin_loop();
                continue;
            }
            if waited < NAP_FOR {
                // Naps, not a wake-up by the caller: Linux queues a woken thread on its
                // waker's core when it can, and that core is busy with the inference until
                // a load balance moves the thread (a scheduler tick, longer than a small
                // model's inference).
                std::thread::sleep(NAP);
                continue;
            }
            let guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, SeqCst);
            let same = |_: &mut ()| unpack(s.claim.load(SeqCst)).0 == seen && !s.stop.load(SeqCst);
            let guard = s
                .wake
                .wait_while(guard, same)
                .unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_sub(1, SeqCst);
            drop(guard);
        };
        seen = epoch;
        s.work(epoch);
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        {
            let _guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_per_job() {
        let pool = SpinPool::new(3).unwrap();
        for n in [0, 1, 2, 3, 7, 64, 1000] {
            let counts: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            for _ in 0..50 {
                assert!(pool.run(n, &|i| {
                    counts[i].fetch_add(1, SeqCst);
                }));
            }
            assert!(counts.iter().all(|c| c.load(SeqCst) == 50), "{n} tasks");
        }
    }

    /// Two tasks that each wait (up to a deadline) until both have started: only a worker
    /// running beside the caller lets both see the other.
    fn both_ran_together(pool: &SpinPool) -> bool {
        let started = AtomicUsize::new(0);
        let met = AtomicUsize::new(0);
        assert!(pool.run(2, &|_| {
            started.fetch_add(1, SeqCst);
            let deadline = Instant::now() + Duration::from_secs(5);
            while started.load(SeqCst) < 2 && Instant::now() < deadline {
                std::hint::spin_loop();
            }
            if started.load(SeqCst) == 2 {
                met.fetch_add(1, SeqCst);
            }
        }));
        met.load(SeqCst) == 2
    }

    #[test]
    fn spinning_napping_and_sleeping_workers_take_the_next_job() {
        let pool = SpinPool::new(2).unwrap();
        for idle in [Duration::ZERO, SPIN * 5, NAP_FOR + SPIN * 5] {
            std::thread::sleep(idle);
            assert!(both_ran_together(&pool), "after {idle:?} idle");
        }
    }

    #[test]
    fn a_panicking_task_is_reported_and_the_pool_goes_on() {
        let pool = SpinPool::new(2).unwrap();
        assert!(!pool.run(4, &|i| assert_ne!(i, 2, "task 2 fails")));
        let hits = AtomicU32::new(0);
        assert!(pool.run(4, &|_| {
            hits.fetch_add(1, SeqCst);
        }));
        assert_eq!(hits.load(SeqCst), 4);
    }

    #[test]
    fn callers_on_several_threads_take_turns() {
        let pool = SpinPool::new(2).unwrap();
        let total = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..200 {
                        assert!(pool.run(5, &|_| {
                            total.fetch_add(1, SeqCst);
                        }));
                    }
                });
            }
        });
        assert_eq!(total.load(SeqCst), 3 * 200 * 5);
    }
}
