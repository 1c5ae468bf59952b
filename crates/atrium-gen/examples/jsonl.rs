//! `cargo run --release -p atrium-gen --example jsonl -- <seed> <events> [--count]`: JSONL to
//! stdout, or with `--count` just generate and report timing.

use std::io::{BufWriter, Write};

use atrium_gen::{GenConfig, Generator};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = args.first().and_then(|a| a.parse().ok()).unwrap_or(1);
    let events = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let started = std::time::Instant::now();
    let mut generator = Generator::new(GenConfig::for_events(seed, events));
    let written = if args.iter().any(|a| a == "--count") {
        generator.by_ref().count()
    } else {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let written = generator.write_jsonl(&mut out)?;
        out.flush()?;
        written
    };
    eprintln!("{written} events in {:?}", started.elapsed());
    Ok(())
}
