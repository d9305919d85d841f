//! The `conbool` binary: parses the command line (DESIGN.md §5) and hands each subcommand to
//! its `cli::<name>::main`, whose return value is the exit status.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use conbool::cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A filtering SMTP relay: streams each message through header parsing and rules, flags spam
/// and hands it to the next hop while the sender is still connected.
#[derive(Parser, Debug)]
#[command(name = "conbool", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Relay, sink and replayer in one process: throughput, latency, byte-exact delivery.
    Demo(cli::demo::DemoArgs),
    /// Scan message files with the relay's rule engine and print each verdict.
    Scan(cli::scan::ScanArgs),
    /// Train the statistical spam classifier on labelled messages and write a model file.
    Train(cli::train::TrainArgs),
    /// Measure spam detection quality on labelled messages (k-fold cross-validation).
    Eval(cli::eval::EvalArgs),
    /// Validate a configuration file and the certificates, keys and rule files it names.
    Check(cli::check::Args),
    /// Run the relay (embedded defaults without --config).
    Run(cli::run::RunArgs),
    /// A next hop for tests and load: accepts, counts, optionally stores, injects failures.
    Sink(cli::sink::SinkArgs),
    /// The corpus replayer: a load generator with latency histograms.
    Replay(cli::replay::ReplayArgs),
    /// Print the PowerShell that sets up Exchange's connectors and transport rules for a tenant.
    Exchange(cli::exchange::Args),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check(args) => cli::check::main(args),
        Command::Scan(args) => cli::scan::main(args),
        Command::Train(args) => cli::train::main(args),
        Command::Eval(args) => cli::eval::main(args),
        Command::Demo(args) => cli::demo::main(args),
        Command::Run(args) => cli::run::main(args),
        Command::Sink(args) => cli::sink::main(args),
        Command::Replay(args) => cli::replay::main(args),
        Command::Exchange(args) => cli::exchange::main(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn check_takes_a_config_file() {
        let rows: &[(&str, &[&str], Option<&str>)] = &[
            (
                "long",
                &["conbool", "check", "--config", "a.toml"],
                Some("a.toml"),
            ),
            (
                "short",
                &["conbool", "check", "-c", "b.toml"],
                Some("b.toml"),
            ),
            ("missing", &["conbool", "check"], None),
            ("no_subcommand", &["conbool"], None),
        ];
        for (row, argv, want) in rows {
            let got = Cli::try_parse_from(*argv)
                .ok()
                .map(|cli| match cli.command {
                    Command::Check(a) => a.config.display().to_string(),
                    _ => String::new(),
                });
            assert_eq!(got.as_deref(), *want, "{row}");
        }
    }
}
