//! sha256 throughput of the two implementations available to `digest::Hasher`: ring (what it
//! uses) and RustCrypto's sha2 (which picks SHA-NI at run time through cpufeatures). Prints one
//! row per implementation and write size; the faster one belongs in digest.rs.
//!
//! ```text
//! cargo run --release -p ocibuild_core --example bench_sha256 -- [MB] [--runs N]
//! ```
//!
//! MB defaults to 100. Each row is the best of `--runs` (default 5) passes over the same
//! in-memory buffer, so only hashing is timed.

use std::time::Instant;

use sha2::Digest as _;

fn main() {
    let mut megabytes = 100usize;
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = number(args.next(), "--runs").max(1),
            other => megabytes = number(Some(other.to_string()), "MB"),
        }
    }
    let data = pseudo_random(megabytes * 1_000_000);
    println!(
        "sha256 of {megabytes} MB, best of {runs}; SHA-NI {}",
        if std::arch::is_x86_feature_detected!("sha") {
            "present"
        } else {
            "absent"
        }
    );
    println!(
        "{:<8} {:>10} {:>9} {:>9}",
        "impl", "write KiB", "seconds", "MB/s"
    );
    for chunk in [8 << 10, 64 << 10, 1 << 20] {
        let ring = best_of(runs, || {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            data.chunks(chunk).for_each(|c| ctx.update(c));
            ctx.finish().as_ref().to_vec()
        });
        let sha2 = best_of(runs, || {
            let mut h = sha2::Sha256::new();
            data.chunks(chunk).for_each(|c| h.update(c));
            h.finalize().to_vec()
        });
        assert_eq!(ring.1, sha2.1, "both implementations agree");
        for (name, (seconds, _)) in [("ring", ring), ("sha2", sha2)] {
            println!(
                "{name:<8} {:>10} {seconds:>9.3} {:>9.0}",
                chunk >> 10,
                megabytes as f64 / seconds
            );
        }
    }
}

fn best_of(runs: usize, hash: impl Fn() -> Vec<u8>) -> (f64, Vec<u8>) {
    let mut best = f64::INFINITY;
    let mut digest = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        digest = hash();
        best = best.min(start.elapsed().as_secs_f64());
    }
    (best, digest)
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn number(value: Option<String>, what: &str) -> usize {
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what} needs a number"))
}
