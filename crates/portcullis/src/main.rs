//! `portcullis`: the command line. Parses arguments, sets up logging, loads configuration and runs
//! the gateway; everything else lives in the library crates.

mod audit;
mod cli;
mod connections;
mod demo;
mod demo_upstream;
mod operator;
mod pins;
mod policy_diff;
mod reload;
mod simulate;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    #[expect(
        clippy::disallowed_methods,
        reason = "the binary reads the environment, once, here"
    )]
    // rmcp (the demo's upstream) warns on every refusal it is sent, an expected answer.
    let filter = std::env::var("PORTCULLIS_LOG").unwrap_or_else(|_| "info,rmcp=error".to_owned());
    #[expect(
        clippy::disallowed_methods,
        reason = "the binary reads the environment, once, here"
    )]
    let format = std::env::var("PORTCULLIS_LOG_FORMAT").ok();
    use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if args.log_json(format.as_deref()) {
        // One object a line, with the fields of the spans an event is in (the correlation id
        // of the request among them), for a log pipeline to index.
        fmt.json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        // Colour codes only for a person at a terminal, never into log files and CI output.
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed()
    };
    let (traces, _telemetry) = match args.telemetry() {
        Some((endpoint, service)) => match telemetry::start(&endpoint, &service) {
            Ok((layer, kept)) => (Some(layer), Some(kept)),
            Err(error) => {
                eprintln!("portcullis: {error}");
                return ExitCode::from(2);
            }
        },
        None => (None, None),
    };
    // The log's filter is the log's alone (a trace is exported whatever the log shows); the
    // log does not see the steps' spans, so every line in a request names the request's span
    // (its correlation id), not a step's.
    let steps = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.is_span()
            && meta.target() == portcullis_gateway::trace::TARGET
            && meta.name() != "request")
    });
    let fmt = fmt.with_filter(tracing_subscriber::filter::FilterExt::and(
        tracing_subscriber::EnvFilter::new(filter),
        steps,
    ));
    tracing_subscriber::registry().with(fmt).with(traces).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portcullis: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run_command(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portcullis: {error:#}");
            ExitCode::from(2)
        }
    }
}
