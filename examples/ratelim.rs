//! The counterpart of libevent's `test/test-ratelim.c`: a server writes as fast as its
//! rate limits allow to CONNS loopback clients, and the clients measure what arrives.
//!
//! ```text
//! cargo run --release --example ratelim -- [-n CONNS] [-c PER_CONN_BYTES_PER_S]
//!     [-g GROUP_BYTES_PER_S] [-G GROUP_DRAIN] [-t TICK_MS] [-m MIN_SHARE] [-d SECONDS]
//! ```
//!
//! - `-n`: connections (default 30);
//! - `-c`: each connection's own write limit, bytes per second (default none);
//! - `-g`: one group limit over all connections, bytes per second (default none);
//! - `-G`: bytes drained from the group's bucket every tick, as other traffic would
//!   (default 0; needs `-g`);
//! - `-t`: the tick in milliseconds (default 100);
//! - `-m`: the group's minimum share in bytes (default 64);
//! - `-d`: how long to measure, in seconds (default 5).
//!
//! It prints one line per measure (`per_conn_avg_bytes_s`, `per_conn_min_bytes_s`,
//! `per_conn_max_bytes_s`, `per_conn_stddev_bytes_s`, `total_bytes_s`) and exits
//! non-zero if the per-connection average is more than 10 % away from what the limits
//! allow, if the total is more than 10 % away from the group's cap, or if a
//! connection got less than half or more than twice the mean. Without a limit it
//! measures and checks only fairness.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::bufferevent::{
    BufferEvent, Direction, RateLimit, RateLimitGroup, Watermarks,
};

/// The command line.
#[derive(Debug)]
struct Args {
    conns: usize,
    per_conn: Option<u64>,
    group: Option<u64>,
    group_drain: u64,
    tick_ms: u64,
    min_share: Option<u64>,
    seconds: f64,
}

impl Args {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut parsed = Self {
            conns: 30,
            per_conn: None,
            group: None,
            group_drain: 0,
            tick_ms: 100,
            min_share: None,
            seconds: 5.0,
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad {flag} {value:?}"))
            };
            match flag.as_str() {
                "-n" => {
                    parsed.conns = usize::try_from(number()?)
                        .ok()
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(|| format!("bad -n {value:?}: 1 to 10000 connections"))?;
                }
                "-c" => parsed.per_conn = Some(number()?),
                "-g" => parsed.group = Some(number()?),
                "-G" => parsed.group_drain = number()?,
                "-t" => parsed.tick_ms = number()?,
                "-m" => parsed.min_share = Some(number()?),
                "-d" => {
                    parsed.seconds = value
                        .parse::<f64>()
                        .ok()
                        .filter(|s| *s > 0.0 && *s <= 86_400.0)
                        .ok_or_else(|| format!("bad -d {value:?}: seconds in (0, 86400]"))?;
                }
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if parsed.group_drain > 0 && parsed.group.is_none() {
            return Err("-G needs -g".to_owned());
        }
        Ok(parsed)
    }

    fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// A limit of `bytes_per_s` on writing (reading unlimited in practice).
    fn limit(&self, bytes_per_s: u64) -> Result<RateLimit, String> {
        let per_tick = bytes_per_s
            .checked_mul(self.tick_ms)
            .map(|b| b / 1000)
            .filter(|&b| b > 0)
            .ok_or_else(|| format!("bad limit: {bytes_per_s} bytes/s is not 1 or more per tick"))?;
        let big = tokio_bufferevent::bufferevent::RATE_LIMIT_MAX;
        RateLimit::new(big, big, per_tick, per_tick, Some(self.tick()))
            .map_err(|e| format!("bad limit: {e}"))
    }

    /// What the group lets through per second, after the drain.
    fn group_cap(&self) -> Option<f64> {
        let ticks_per_s = 1000.0 / self.tick_ms as f64;
        self.group
            .map(|g| g as f64 - self.group_drain as f64 * ticks_per_s)
    }
}

/// The server's side of one connection: writes as fast as its limits allow.
fn serve(stream: TcpStream, limit: Option<RateLimit>, group: Option<&RateLimitGroup>) {
    let chunk = bytes::Bytes::from(vec![b'x'; 16 * 1024]);
    let mut builder = BufferEvent::builder()
        .write_watermarks(Watermarks::new(64 * 1024, 0))
        .on_write(move |ctx| {
            // Keep the output topped up: the limits, not the application, pace it.
            while ctx.output().len() < 128 * 1024 {
                ctx.output().add_bytes(chunk.clone());
            }
        });
    if let Some(limit) = limit {
        builder = builder.rate_limit(limit);
    }
    let bev = match builder.tcp(stream) {
        Ok(bev) => bev,
        Err(e) => {
            eprintln!("ratelim: {e}");
            return;
        }
    };
    if let Some(group) = group {
        group.add(&bev);
    }
    // Enabling WRITE with an empty output runs the write callback once (B-14): that
    // starts the flow.
    bev.enable(Direction::WRITE);
}

/// Measures; the bytes each client received per second.
async fn run(args: &Args) -> Result<Vec<f64>, String> {
    let per_conn = args.per_conn.map(|c| args.limit(c)).transpose()?;
    let group = match args.group {
        Some(g) => Some(RateLimitGroup::new(args.limit(g)?)),
        None => None,
    };
    if let (Some(group), Some(share)) = (&group, args.min_share) {
        group.set_min_share(share);
    }
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let counters: Vec<Arc<AtomicU64>> = (0..args.conns).map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    for counter in &counters {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (accepted, _) = listener.accept().await.map_err(|e| e.to_string())?;
        serve(accepted, per_conn, group.as_ref());
        let counter = Arc::clone(counter);
        clients.push(tokio::spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        }));
    }
    // `-G`: other traffic takes this much from the group every tick.
    let drain = group.clone().filter(|_| args.group_drain > 0).map(|group| {
        let (drain, tick) = (args.group_drain as i64, args.tick());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(tick);
            loop {
                ticks.tick().await;
                group.decrement_write_limit(drain);
            }
        })
    });
    // Measure after half a second, when every connection is flowing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    let secs = started.elapsed().as_secs_f64();
    let rates = counters
        .iter()
        .zip(start)
        .map(|(c, s)| (c.load(Ordering::Relaxed) - s) as f64 / secs)
        .collect();
    for client in clients {
        client.abort();
    }
    if let Some(drain) = drain {
        drain.abort();
    }
    Ok(rates)
}

/// Prints the measures and says what failed, if anything.
fn report(args: &Args, rates: &[f64]) -> Vec<String> {
    let n = rates.len() as f64;
    let total: f64 = rates.iter().sum();
    let mean = total / n;
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    let stddev = (rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    println!("per_conn_avg_bytes_s={mean:.0}");
    println!("per_conn_min_bytes_s={min:.0}");
    println!("per_conn_max_bytes_s={max:.0}");
    println!("per_conn_stddev_bytes_s={stddev:.0}");
    println!("total_bytes_s={total:.0}");
    let mut failures = Vec::new();
    let within = |got: f64, want: f64| (got - want).abs() <= want * 0.10;
    let group_cap = args.group_cap();
    let per_conn_expected = match (args.per_conn, group_cap) {
        (Some(c), Some(g)) => Some((c as f64).min(g / n)),
        (Some(c), None) => Some(c as f64),
        (None, Some(g)) => Some(g / n),
        (None, None) => None,
    };
    if let Some(want) = per_conn_expected
        && !within(mean, want)
    {
        failures.push(format!(
            "per-connection average {mean:.0} B/s is not within 10 % of {want:.0}"
        ));
    }
    if let Some(cap) = group_cap {
        let want = cap.min(args.per_conn.map_or(f64::INFINITY, |c| c as f64 * n));
        if !within(total, want) {
            failures.push(format!(
                "total {total:.0} B/s is not within 10 % of {want:.0}"
            ));
        }
    }
    if min < mean / 2.0 || max > mean * 2.0 {
        failures.push(format!(
            "unfair: min {min:.0}, max {max:.0}, mean {mean:.0} B/s"
        ));
    }
    failures
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            eprintln!(
                "{problem}\nusage: ratelim [-n CONNS] [-c PER_CONN_BYTES_PER_S] \
                 [-g GROUP_BYTES_PER_S] [-G GROUP_DRAIN] [-t TICK_MS] [-m MIN_SHARE] \
                 [-d SECONDS]"
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ratelim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rates = match runtime.block_on(run(&args)) {
        Ok(rates) => rates,
        Err(e) => {
            eprintln!("ratelim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let failures = report(&args, &rates);
    for failure in &failures {
        eprintln!("FAIL: {failure}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
