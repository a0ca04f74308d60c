//! `cvmprobe`: boots the guest kernel, reads its KTAP verdict, and reads KTAP logs. This file
//! parses the command line and hands each subcommand to `cvmprobe::command`.

use cvmprobe::cli::{Cli, Command};
use cvmprobe::command;
use cvmprobe::sim_call::SimCallArgs;
use std::process::ExitCode;

/// `list --conformance-markdown`: print the README's "Conformance cases" table.
const CONFORMANCE_MARKDOWN: &str = "conformance-markdown";

/// The command line: [`Cli`] plus `sim-call` and `list --conformance-markdown`, which live
/// beside the derived definitions (`cvmprobe::sim_call`).
fn command_line() -> clap::Command {
    use clap::{Arg, ArgAction, Args, CommandFactory};
    Cli::command()
        .subcommand(SimCallArgs::augment_args(clap::Command::new("sim-call")))
        .mut_subcommand("list", |c| {
            c.arg(
                Arg::new(CONFORMANCE_MARKDOWN)
                    .long(CONFORMANCE_MARKDOWN)
                    .action(ArgAction::SetTrue)
                    .help(
                        "Print the conformance table (protocol::conformance) as the README's \
                         Markdown section",
                    ),
            )
        })
}

/// A closed stdout (`cvmprobe list --names | head -1`) ends the process quietly, as it ends
/// other Unix tools: Rust ignores SIGPIPE, so `println!` would panic on EPIPE instead.
fn die_quietly_on_closed_stdout() {
    // SAFETY: restores the default disposition of SIGPIPE before any thread starts; no signal
    // handler of ours is involved, the kernel simply ends the process on a write to a closed
    // pipe.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    use clap::FromArgMatches;
    die_quietly_on_closed_stdout();
    let matches = command_line().get_matches();
    let r: anyhow::Result<bool> = if let Some(m) = matches.subcommand_matches("sim-call") {
        let a = SimCallArgs::from_arg_matches(m).unwrap_or_else(|e| e.exit());
        cvmprobe::sim_call::run(&a)
    } else {
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let markdown = matches
            .subcommand_matches("list")
            .is_some_and(|m| m.get_flag(CONFORMANCE_MARKDOWN));
        match cli.command {
            None => command::run(&cli.run),
            Some(Command::Run(a)) => command::run(&a),
            Some(Command::List(a)) => command::list(&a, markdown),
            Some(Command::Parse(a)) => command::parse(&a),
            Some(Command::Bench(a)) => command::bench(&a),
            Some(Command::FuzzHost(a)) => command::fuzz_host(&a),
            Some(Command::Selftest(a)) => command::selftest(&a),
        }
        .map_err(anyhow::Error::from)
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cvmprobe: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
